"""Finding data files: `--data-dir`, then `EDITBENCH_DATA`, then the user cache, then a download.

Data is never shipped with the code. Each file is described by a `DataFile` (relative path,
sha256, public URL); a download is verified against the sha256 before it is moved into place.
`EDITBENCH_DATA_MIRROR` replaces every public URL by `<mirror>/<relative path>` (a local copy
of the data folder served over HTTP, as the tests do on loopback).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from editbench.errors import EditbenchError
from editbench.files import write_atomic


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


def search_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for data, in order."""
    dirs = []
    if data_dir:
        dirs.append(Path(data_dir))
    if os.environ.get("EDITBENCH_DATA"):
        dirs.append(Path(os.environ["EDITBENCH_DATA"]))
    dirs.append(user_cache() / "data")
    return dirs


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def resolve(spec: DataFile, data_dir: str | Path | None = None, download: bool = True) -> Path:
    """Path of the file described by `spec`, downloading it into the user cache if needed."""
    for folder in search_dirs(data_dir):
        candidate = folder / spec.path
        if candidate.is_file():
            return candidate
    if not download:
        raise EditbenchError(f"data file {spec.path} not found in {', '.join(map(str, search_dirs(data_dir)))}")
    return fetch(spec, user_cache() / "data" / spec.path)


def _source_url(spec: DataFile) -> str:
    mirror = os.environ.get("EDITBENCH_DATA_MIRROR")
    return f"{mirror.rstrip('/')}/{spec.path}" if mirror else spec.url


def fetch(spec: DataFile, target: Path) -> Path:
    """Download `spec` to `target` atomically, with progress and sha256 verification."""
    from tqdm.auto import tqdm

    url = _source_url(spec)
    mirrored = url != spec.url
    print(f"editbench: downloading {spec.path} from {url}", file=sys.stderr)
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
