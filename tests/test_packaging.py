"""Every package folder is installed, and `methods/`/`tasks/` only as `editbench.methods`/`editbench.tasks`."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for top, dotted in (("editbench", "editbench"), ("methods", "editbench.methods"), ("tasks", "editbench.tasks")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join([dotted, *rel.parts]))
    # Data folders (no module) are listed with their files in package-data: the shipped sweep grids.
    data = {name for name in config.get("package-data", {}) if name not in found}
    for name in data:
        folder = ROOT / Path(*name.split("."))
        assert folder.is_dir() and not list(folder.glob("*.py")), name
    assert found | data == listed
    assert all(p.startswith("editbench") for p in listed)


def _imports(path: Path, package: str) -> list[str]:
    pattern = re.compile(rf"^\s*(from|import)\s+{re.escape(package)}\b", re.M)
    return pattern.findall(path.read_text())


def test_core_never_imports_plugins():
    for path in (ROOT / "editbench").rglob("*.py"):
        assert not _imports(path, "editbench.methods") and not _imports(path, "editbench.tasks"), path


def test_methods_and_tasks_do_not_import_each_other():
    for path in (ROOT / "methods").rglob("*.py"):
        assert not _imports(path, "editbench.tasks"), path
    for path in (ROOT / "tasks").rglob("*.py"):
        assert not _imports(path, "editbench.methods"), path
