"""Finding data files: `--data-dir` alone when given; else `EDITBENCH_DATA`, the user cache, a download.

Data is never shipped with the code. Each file is described by a `DataFile` (relative path,
sha256, public URL); a download is verified against the sha256 before it is moved into place,
and a local file is verified every time it is used: a file whose sha256 differs from the known
one is an error naming both hashes, unless the user declares it their own data (`own_data()`,
`--own-data`, `EDITBENCH_OWN_DATA=1`; recorded in the run). A corrupt copy in the user cache is
downloaded again. An explicit `--data-dir` that is missing, or lacks a file, is an error (never a
silent fallback to `EDITBENCH_DATA`).
`EDITBENCH_DATA_MIRROR` replaces every public URL by `<mirror>/<relative path>` (a local copy
of the data folder served over HTTP, as the tests do on loopback).
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from editbench.errors import EditbenchError
from editbench.files import write_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataFile:
    """A data file by its path under the data folder, e.g. `zsre/zsre_mend_train_800.json`.

    url: public source. transform: turns the downloaded bytes into the file's bytes (e.g. keep
    the first 800 records of a published 1k sample); the sha256 is checked after the transform.
    """

    path: str
    sha256: str
    url: str
    license: str = ""
    transform: Callable[[bytes], bytes] | None = None


def user_cache() -> Path:
    return Path(os.environ.get("EDITBENCH_CACHE", Path.home() / ".cache" / "editbench"))


_OWN_DATA: contextvars.ContextVar[bool] = contextvars.ContextVar("editbench_own_data", default=False)


@contextlib.contextmanager
def own_data(enabled: bool = True) -> Iterator[None]:
    """Within the block, local data files whose sha256 differs from the known one are accepted."""
    token = _OWN_DATA.set(enabled)
    try:
        yield
    finally:
        _OWN_DATA.reset(token)


def own_data_enabled() -> bool:
    return _OWN_DATA.get() or os.environ.get("EDITBENCH_OWN_DATA", "").lower() in ("1", "true", "yes", "on")


def check_data_dir(data_dir: str | Path | None) -> Path | None:
    """The `--data-dir` folder, which must exist; `EditbenchError` otherwise."""
    if not data_dir:
        return None
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise EditbenchError(f"--data-dir {str(data_dir)!r} {what} (expected a folder laid out as in DATA.md)")
    return folder


def search_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for data, in order: an explicit `data_dir` alone, else `EDITBENCH_DATA`
    (which must exist when set) and the user cache."""
    if data_dir:
        return [check_data_dir(data_dir)]  # type: ignore[list-item]
    dirs = []
    if os.environ.get("EDITBENCH_DATA"):
        env = Path(os.environ["EDITBENCH_DATA"]).expanduser()
        if not env.is_dir():
            raise EditbenchError(f"EDITBENCH_DATA={os.environ['EDITBENCH_DATA']!r} is not a folder "
                                 "(expected a folder laid out as in DATA.md, or unset it)")
        dirs.append(env)
    dirs.append(user_cache() / "data")
    return dirs


_DIGESTS: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file (memoised per path, size and modification time)."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def verify(spec: DataFile, path: Path) -> Path:
    """`path` when its sha256 is the known one (or the user declared their own data)."""
    digest = sha256_of(path)
    if digest != spec.sha256 and not own_data_enabled():
        raise EditbenchError(f"data file {path} has sha256 {digest}, expected {spec.sha256} (DATA.md); "
                             "restore the original, or pass --own-data to use your own version")
    return path


def resolve(spec: DataFile, data_dir: str | Path | None = None, download: bool = True) -> Path:
    """Path of the verified file described by `spec`, downloading it into the user cache if needed."""
    cached = user_cache() / "data" / spec.path
    for folder in search_dirs(data_dir):
        candidate = folder / spec.path
        if candidate.is_file():
            if candidate == cached and sha256_of(candidate) != spec.sha256 and download:
                log.warning(f"cached {candidate} does not match its sha256: downloading it again")
                break
            return verify(spec, candidate)
    else:
        if data_dir:
            raise EditbenchError(f"data file {spec.path} is not in --data-dir {str(data_dir)!r} (expected "
                                 f"{Path(data_dir) / spec.path}; see DATA.md)")
        if not download:
            raise EditbenchError(f"data file {spec.path} not found in {', '.join(map(str, search_dirs(data_dir)))}")
    return fetch(spec, cached)


def _source_url(spec: DataFile) -> str:
    mirror = os.environ.get("EDITBENCH_DATA_MIRROR")
    return f"{mirror.rstrip('/')}/{spec.path}" if mirror else spec.url


def fetch(spec: DataFile, target: Path) -> Path:
    """Download `spec` to `target` atomically, with progress and sha256 verification."""
    from tqdm.auto import tqdm

    url = _source_url(spec)
    mirrored = url != spec.url
    log.info(f"downloading {spec.path} from {url}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            chunks = []
            with tqdm(total=total, unit="B", unit_scale=True, desc=spec.path, disable=None) as bar:
                while block := response.read(1 << 16):
                    chunks.append(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError) as exc:
        raise EditbenchError(
            f"could not download {spec.path} from {url} ({exc}); put the file under --data-dir or "
            f"EDITBENCH_DATA (see DATA.md)"
        ) from None
    payload = b"".join(chunks)
    if spec.transform is not None and not mirrored:
        payload = spec.transform(payload)
    digest = hashlib.sha256(payload).hexdigest()
    if digest != spec.sha256:
        raise EditbenchError(f"downloaded {spec.path} has sha256 {digest}, expected {spec.sha256}")
    write_atomic(target, payload)
    return target


def first_json_records(count: int) -> Callable[[bytes], bytes]:
    """Transform: keep the first `count` records of a JSON array, serialised with `indent=0`."""

    def keep(payload: bytes) -> bytes:
        records = json.loads(payload)
        return json.dumps(records[:count], indent=0, ensure_ascii=False).encode()

    return keep
