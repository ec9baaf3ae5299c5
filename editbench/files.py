"""Atomic writes and cached artifacts that cannot lie.

- `write_atomic` / `atomic_folder`: a file or a whole folder appears complete under its name, or
  not at all. Staging names carry the writer's host and pid (`.<name>.tmp-<host>-<pid>-…`,
  `.<name>.staging-<host>-<pid>-…`), so a leftover of a killed writer is recognised and removed on
  the next write of the same target, or by `sweep_staging` (the runner sweeps the user cache at
  every start); a live writer's staging is never touched.
- `write_artifact` / `read_artifact`: a cached file plus a JSON sidecar (`<path>.json` with the
  suffix replaced) holding its provenance and `checksum: {sha256, bytes}`; a read whose bytes do
  not match (truncated, overwritten, sidecar missing) raises `CorruptArtifact` naming the path.
- `atomic_folder` writes `MANIFEST` (sha256 of every file, and the caller's provenance) into the
  folder; `verify_folder` checks it, `usable_folder` is the "reuse or rebuild" test for caches.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from editbench.errors import CorruptArtifact

log = logging.getLogger(__name__)

MANIFEST = ".manifest.json"
CHECKSUM_KEY = "checksum"
# A legacy leftover (staging names without host/pid, from older versions) older than this is removed.
LEGACY_AGE_S = 3600.0
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_OURS = re.compile(r"^\.(?P<target>.+)\.(?:tmp|staging)-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-")
_LEGACY = re.compile(r"^\.(?P<target>.+)\.(?:staging-)?[a-z0-9_]{8}$")


def _tag(kind: str) -> str:
    return f"{kind}-{_HOST}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_orphan(entry: Path, now: float) -> bool:
    """True for a staging file or folder whose writer is dead (ours) or that is old (legacy)."""
    match = _OURS.match(entry.name)
    if match:
        return match["host"] == _HOST and not _pid_alive(int(match["pid"]))
    if _LEGACY.match(entry.name) and entry.name != MANIFEST:
        try:
            return now - entry.lstat().st_mtime > LEGACY_AGE_S
        except OSError:
            return False
    return False


def _remove(entry: Path) -> int:
    """Remove a file or folder; returns the bytes it held."""
    try:
        if entry.is_dir() and not entry.is_symlink():
            size = sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())
            shutil.rmtree(entry, ignore_errors=True)
        else:
            size = entry.lstat().st_size
            entry.unlink(missing_ok=True)
        return size
    except OSError:
        return 0


def clean_leftovers(target: Path) -> int:
    """Remove orphaned staging files/folders of `target` in its folder; returns the bytes freed."""
    target = Path(target)
    if not target.parent.is_dir():
        return 0
    now, freed = time.time(), 0
    for entry in target.parent.glob(f".{glob_escape(target.name)}.*"):
        if _is_orphan(entry, now):
            freed += _remove(entry)
    return freed


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def sweep_staging(root: Path) -> list[Path]:
    """Remove every orphaned staging leftover under `root` (recursively); returns what was removed."""
    root = Path(root)
    if not root.is_dir():
        return []
    now, removed = time.time(), []
    for entry in sorted(root.rglob(".*"), key=lambda p: len(p.parts)):
        if entry.exists() and (_OURS.match(entry.name) or _LEGACY.match(entry.name)) and _is_orphan(entry, now):
            _remove(entry)
            removed.append(entry)
    return removed


def write_atomic(target: Path, payload: bytes) -> None:
    """Write bytes to `target` through a temporary file in the same folder, fsync and a rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{_tag('tmp')}")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# -- single-file artifacts -----------------------------------------------------------------------
def sidecar_of(path: Path) -> Path:
    """`x.safetensors` -> `x.json`: the artifact's provenance and checksum."""
    return Path(path).with_suffix(".json")


def write_artifact(path: Path, payload: bytes, provenance: dict[str, Any]) -> None:
    """Write `payload` to `path` and its sidecar (provenance + sha256), both atomically, payload first
    (a writer killed in between leaves a payload without a checksum: rejected on read)."""
    path = Path(path)
    checksum = {"sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)}
    write_atomic(path, payload)
    sidecar = {**provenance, CHECKSUM_KEY: checksum}
    write_atomic(sidecar_of(path), (json.dumps(sidecar, indent=1, default=str) + "\n").encode())


def read_provenance(path: Path) -> dict[str, Any]:
    """The sidecar of `path` (provenance and checksum); `CorruptArtifact` when missing or unreadable."""
    sidecar = sidecar_of(path)
    try:
        info = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptArtifact(path, f"no checksum: {sidecar.name} is missing") from None
    except (OSError, ValueError) as exc:
        raise CorruptArtifact(path, f"unreadable {sidecar.name}: {type(exc).__name__}") from None
    if not isinstance(info, dict) or not isinstance(info.get(CHECKSUM_KEY), dict):
        raise CorruptArtifact(path, f"no checksum in {sidecar.name}")
    return info


def read_artifact(path: Path) -> tuple[bytes, dict[str, Any]]:
    """(payload, provenance) of an artifact written by `write_artifact`, verified against its sha256."""
    path = Path(path)
    info = read_provenance(path)
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise CorruptArtifact(path, f"unreadable: {type(exc).__name__}") from None
    expected = info.pop(CHECKSUM_KEY)
    digest = hashlib.sha256(payload).hexdigest()
    if digest != expected.get("sha256"):
        raise CorruptArtifact(path, f"{len(payload)} bytes with sha256 {digest[:12]}…, its sidecar says "
                                    f"{expected.get('bytes')} bytes with sha256 {str(expected.get('sha256'))[:12]}…")
    return payload, info


def remove_artifact(path: Path) -> None:
    for p in (Path(path), sidecar_of(path)):
        p.unlink(missing_ok=True)


# -- folder artifacts ----------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_folder(target: Path, provenance: dict[str, Any] | None = None) -> Iterator[Path]:
    """`with atomic_folder(target) as staging:` fill `staging`; on success it replaces `target`.

    A `MANIFEST` with the sha256 of every file (and `provenance`) is written last, so the folder
    can be verified on load (`verify_folder`). On an error the staging folder is removed and
    `target` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(target)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.{_tag('staging')}"))
    try:
        yield staging
        write_manifest(staging, provenance or {})
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_manifest(folder: Path, provenance: dict[str, Any]) -> None:
    files = {str(p.relative_to(folder)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"files": files, "provenance": provenance}, indent=1, default=str) + "\n")


def verify_folder(folder: Path) -> dict[str, Any]:
    """Provenance of a folder written by `atomic_folder`; `CorruptArtifact` naming the first file
    that is missing or whose sha256 differs (or a missing manifest)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except FileNotFoundError:
        raise CorruptArtifact(folder, f"no {MANIFEST}: incomplete or written by an older editbench") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptArtifact(folder, f"unreadable {MANIFEST}: {type(exc).__name__}") from None
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise CorruptArtifact(path, "missing")
        size = path.stat().st_size
        digest = sha256_file(path) if size == expected.get("bytes") else "(size differs)"
        if size != expected.get("bytes") or digest != expected.get("sha256"):
            raise CorruptArtifact(path, f"{size} bytes with sha256 {digest[:12]}, the manifest says "
                                        f"{expected.get('bytes')} bytes with sha256 {str(expected.get('sha256'))[:12]}")
    return manifest.get("provenance") or {}


def usable_folder(folder: Path, adopt_legacy: str | None = None) -> bool:
    """True when `folder` holds a verified cache; a corrupt one is removed with a warning (the
    caller rebuilds it). `adopt_legacy`: a marker file (e.g. '.complete') of older versions: a
    folder that has it but no manifest gets a manifest of its current content once."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    if adopt_legacy and not (folder / MANIFEST).exists() and (folder / adopt_legacy).is_file():
        write_manifest(folder, {"adopted": "written by an older editbench: checksums taken at first verified use"})
        return True
    try:
        verify_folder(folder)
        return True
    except CorruptArtifact as exc:
        warn(f"cached artifact {exc.path} is corrupt ({exc.reason}): removing it and rebuilding")
        shutil.rmtree(folder, ignore_errors=True)
        return False


def warn(message: str) -> None:
    log.warning(message)
