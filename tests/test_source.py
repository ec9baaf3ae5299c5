"""editbench.source: the files a run executes, found through the import statements, hashed from git."""
import hashlib
import subprocess

from editbench.source import PYPROJECT, GitTree, imported_modules, module_path, packaging, source_files, source_hash

PROJECT = """
[project]
name = "toy"
description = "first"
dependencies = ["torch>=2.1"]
[project.entry-points."editbench.methods"]
alpha = "editbench.methods.alpha:Alpha"
beta = "editbench.methods.beta:Beta"
[project.entry-points."editbench.tasks"]
toy = "editbench.tasks.toy:Toy"
"""
FILES = {
    PYPROJECT: PROJECT,
    "editbench/__init__.py": "",
    "editbench/runner.py": "from editbench import scoring\n",
    "editbench/scoring.py": "import math\n",
    "editbench/lazy.py": "X = 1\n",
    "editbench/report/__init__.py": "from editbench.leaderboard import rows\n",
    "editbench/leaderboard.py": "",
    "methods/__init__.py": "",
    "methods/shared/__init__.py": "",
    "methods/shared/net.py": "def f():\n    from editbench.lazy import X  # an import inside a function counts\n    return X\n",
    "methods/alpha/__init__.py": "from .method import Alpha\n",
    "methods/alpha/method.py": "from editbench.methods.shared import net\n",
    "methods/beta/__init__.py": "from editbench.methods.beta.method import Beta\n",
    "methods/beta/method.py": "",
    "tasks/__init__.py": "",
    "tasks/toy/__init__.py": "from ..common import data\nToy = data\n",
    "tasks/common/__init__.py": "",
    "tasks/common/data.py": "",
    "README.md": "docs\n",
    "tests/test_x.py": "",
    "results/runs.jsonl": "",
}


def git(root, *args):
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


def commit(root, changes):
    for path, text in changes.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    return git(root, "rev-parse", "HEAD").strip()


def test_imports_are_resolved_with_relative_and_from_forms():
    found = imported_modules("from . import a\nfrom ..common import data\nimport os\nfrom editbench.x import y\n",
                             "editbench.tasks.toy", is_package=True)
    assert {"editbench.tasks.toy.a", "editbench.tasks.common", "editbench.tasks.common.data", "os",
            "editbench.x", "editbench.x.y"} <= found
    files = {"methods/alpha/__init__.py": "", "editbench/runner.py": ""}
    assert module_path("editbench.methods.alpha", files) == "methods/alpha/__init__.py"
    assert module_path("editbench.runner", files) == "editbench/runner.py"
    assert module_path("os", files) is None


def test_a_run_hashes_exactly_the_files_it_imports(tmp_path):
    git(tmp_path, "init", "-q")
    first = commit(tmp_path, FILES)
    tree = GitTree(tmp_path, first)
    assert source_files("alpha", "toy", tree) == {
        "editbench/__init__.py", "editbench/runner.py", "editbench/scoring.py", "editbench/lazy.py",
        "methods/__init__.py", "methods/shared/__init__.py", "methods/shared/net.py", "methods/alpha/__init__.py",
        "methods/alpha/method.py", "tasks/__init__.py", "tasks/toy/__init__.py", "tasks/common/__init__.py",
        "tasks/common/data.py"}
    lines = sorted(f"{git(tmp_path, 'rev-parse', f'HEAD:{p}').strip()} {p}" for p in source_files("beta", "toy", tree))
    lines.append(f"{hashlib.sha256(packaging(PROJECT).encode()).hexdigest()} {PYPROJECT}")
    assert source_hash("beta", "toy", first, tmp_path) == hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]


def test_the_hash_changes_only_with_the_code_the_run_executes(tmp_path):
    git(tmp_path, "init", "-q")
    first = commit(tmp_path, FILES)
    alpha, beta = source_hash("alpha", "toy", first, tmp_path), source_hash("beta", "toy", first, tmp_path)
    assert alpha and beta and alpha != beta
    unrelated = commit(tmp_path, {"README.md": "new docs\n", "tests/test_x.py": "x = 1\n", "results/runs.jsonl": "{}\n",
                                  "editbench/leaderboard.py": "# report code\n", "methods/beta/method.py": "# beta only\n",
                                  PYPROJECT: PROJECT.replace("first", "second") + "[tool.pytest.ini_options]\nmarkers = []\n"})
    assert source_hash("alpha", "toy", unrelated, tmp_path) == alpha
    assert source_hash("alpha", "toy", unrelated + "-dirty", tmp_path) == alpha
    assert source_hash("beta", "toy", unrelated, tmp_path) != beta
    changes = {path: FILES[path] + "\n# changed\n"
               for path in ("methods/shared/net.py", "editbench/lazy.py", "tasks/common/data.py", "editbench/scoring.py")}
    changes[PYPROJECT] = PROJECT.replace("torch>=2.1", "torch>=2.2")  # a dependency range
    for path, text in changes.items():
        before = source_hash("alpha", "toy", "HEAD", tmp_path)
        commit(tmp_path, {path: text})
        assert source_hash("alpha", "toy", "HEAD", tmp_path) != before, path
    assert source_hash("alpha", "toy", "0" * 40, tmp_path) is None  # not a commit of this repository
