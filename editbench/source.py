"""The source code a run executes, as one hash read from git: `source_hash(method, task, commit)`.

A run executes `editbench.runner`, its method's and its task's plug-in modules (their entry points in
`pyproject.toml`), and every module of `editbench/`, `methods/` and `tasks/` that these import,
transitively (every `import` statement counts, those inside functions too). The hash covers those
files' git blobs and, of `pyproject.toml`, the dependency ranges, the plug-in entry points and the
package folders at the commit, so two commits give a run the same hash when none of these differ:
commits that change only results, docs, tests, benchmarks, the report code, test settings or
another method's code. The leaderboards pool runs by it (`editbench.leaderboard`), so a long
sweep resumed over several commits stays one experiment until the code it measures changes.
"""
from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import tomllib
from pathlib import Path, PurePosixPath

# Package prefix -> folder of the checkout (`[tool.setuptools] package-dir`), longest prefix first.
PACKAGE_DIRS = (("editbench.methods", "methods"), ("editbench.tasks", "tasks"), ("editbench", "editbench"))
ENTRY_GROUPS = {"method": "editbench.methods", "task": "editbench.tasks"}
RUNNER = "editbench.runner"
PYPROJECT = "pyproject.toml"


class GitTree:
    """The tracked files of `editbench/`, `methods/`, `tasks/` and `pyproject.toml` at one commit."""

    def __init__(self, root: Path, commit: str):
        self.root, self.commit = root, commit
        folders = [folder for _, folder in PACKAGE_DIRS] + [PYPROJECT]
        listing = subprocess.run(["git", "-C", str(root), "ls-tree", "-r", commit, "--", *folders],
                                 capture_output=True, text=True, timeout=30, check=True).stdout
        self.blobs: dict[str, str] = {}  # path -> blob id
        for line in listing.splitlines():
            meta, _, path = line.partition("\t")
            self.blobs[path] = meta.split()[2]

    def read(self, path: str) -> str:
        return subprocess.run(["git", "-C", str(self.root), "cat-file", "blob", self.blobs[path]],
                              capture_output=True, text=True, timeout=30, check=True).stdout


def module_path(module: str, files: dict[str, str]) -> str | None:
    """The file of `module` in the checkout (`a/b.py` or `a/b/__init__.py`), None if it is not there."""
    for prefix, folder in PACKAGE_DIRS:
        if module == prefix or module.startswith(prefix + "."):
            rest = module[len(prefix):].lstrip(".").replace(".", "/")
            base = f"{folder}/{rest}" if rest else folder
            for candidate in (f"{base}.py", f"{base}/__init__.py"):
                if candidate in files:
                    return candidate
            return None
    return None


def imported_modules(text: str, module: str, is_package: bool) -> set[str]:
    """Every module an `import` statement of `text` (the source of `module`) may load: for
    `from a import b` both `a` and `a.b` (the caller keeps those that are files)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` packages up
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _with_parents(module: str) -> list[str]:
    """`a.b.c` -> [a, a.b, a.b.c]: importing a module runs its packages' `__init__` first."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def closure(entries: list[str], tree: GitTree) -> set[str]:
    """The files of `entries` and of every project module they import, transitively."""
    seen: set[str] = set()
    pending = [m for entry in entries for m in _with_parents(entry)]
    while pending:
        module = pending.pop()
        path = module_path(module, tree.blobs)
        if path is None or path in seen:
            continue
        seen.add(path)
        for imported in imported_modules(tree.read(path), module, path.endswith("__init__.py")):
            pending.extend(_with_parents(imported))
    return seen


def plugin_module(kind: str, name: str, pyproject: str) -> str | None:
    """The module of plug-in `name` of `kind` ('method', 'task') in `pyproject.toml`'s entry points."""
    points = tomllib.loads(pyproject).get("project", {}).get("entry-points", {}).get(ENTRY_GROUPS[kind], {})
    target = points.get(name)
    return target.partition(":")[0] if target else None


def source_files(method: str, task: str, tree: GitTree) -> set[str]:
    """The project files a run of `method` on `task` executes at `tree`'s commit."""
    pyproject = tree.read(PYPROJECT) if PYPROJECT in tree.blobs else ""
    entries = [RUNNER] + [m for m in (plugin_module("method", method, pyproject), plugin_module("task", task, pyproject)) if m]
    return closure(entries, tree)


def packaging(pyproject: str) -> str:
    """What of `pyproject.toml` a run depends on, as canonical JSON: the dependency ranges, the
    plug-in entry points and the package folders (not the description, extras or test settings)."""
    data = tomllib.loads(pyproject) if pyproject else {}
    project = data.get("project", {})
    entry_points = {group: points for group, points in project.get("entry-points", {}).items()
                    if group in ENTRY_GROUPS.values()}
    package_dir = data.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    return json.dumps({"dependencies": project.get("dependencies", []), "entry-points": entry_points,
                       "package-dir": package_dir}, sort_keys=True)


def source_hash(method: str, task: str, commit: str | None = None, root: Path | None = None) -> str | None:
    """12 hex digits of sha256 over the sorted `blob path` lines of `source_files` and a last line
    with the sha256 of `packaging`, at `commit` (default HEAD; a '-dirty' suffix is ignored).
    None where git or the commit is unavailable."""
    root = root or Path(__file__).resolve().parent.parent
    try:
        tree = GitTree(root, (commit or "HEAD").removesuffix("-dirty"))
        files = source_files(method, task, tree)
    except (OSError, subprocess.SubprocessError, SyntaxError, tomllib.TOMLDecodeError):
        return None
    if not files:
        return None
    lines = sorted(f"{tree.blobs[path]} {PurePosixPath(path)}" for path in files)
    pyproject = tree.read(PYPROJECT) if PYPROJECT in tree.blobs else ""
    lines.append(f"{hashlib.sha256(packaging(pyproject).encode()).hexdigest()} {PYPROJECT}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]
