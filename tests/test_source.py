"""editbench.source: the files a run executes, found through the import statements, hashed from git."""
import hashlib
import subprocess

from editbench.source import imported_modules, module_path, source_files, source_hash, GitTree

PYPROJECT = """
[project.entry-points."editbench.methods"]
alpha = "editbench.methods.alpha:Alpha"
beta = "editbench.methods.beta:Beta"
[project.entry-points."editbench.tasks"]
toy = "editbench.tasks.toy:Toy"
"""
FILES = {
    "pyproject.toml": PYPROJECT,
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
        "pyproject.toml", "editbench/__init__.py", "editbench/runner.py", "editbench/scoring.py", "editbench/lazy.py",
        "methods/__init__.py", "methods/shared/__init__.py", "methods/shared/net.py", "methods/alpha/__init__.py",
        "methods/alpha/method.py", "tasks/__init__.py", "tasks/toy/__init__.py", "tasks/common/__init__.py",
        "tasks/common/data.py"}
    blobs = sorted(f"{git(tmp_path, 'rev-parse', f'HEAD:{p}').strip()} {p}" for p in source_files("beta", "toy", tree))
    assert source_hash("beta", "toy", first, tmp_path) == hashlib.sha256("\n".join(blobs).encode()).hexdigest()[:12]


def test_the_hash_changes_only_with_the_code_the_run_executes(tmp_path):
    git(tmp_path, "init", "-q")
    first = commit(tmp_path, FILES)
    alpha, beta = source_hash("alpha", "toy", first, tmp_path), source_hash("beta", "toy", first, tmp_path)
    assert alpha and beta and alpha != beta
    unrelated = commit(tmp_path, {"README.md": "new docs\n", "tests/test_x.py": "x = 1\n", "results/runs.jsonl": "{}\n",
                                  "editbench/leaderboard.py": "# report code\n", "methods/beta/method.py": "# beta only\n"})
    assert source_hash("alpha", "toy", unrelated, tmp_path) == alpha
    assert source_hash("alpha", "toy", unrelated + "-dirty", tmp_path) == alpha
    assert source_hash("beta", "toy", unrelated, tmp_path) != beta
    for path in ("methods/shared/net.py", "editbench/lazy.py", "tasks/common/data.py", "editbench/scoring.py", "pyproject.toml"):
        before = source_hash("alpha", "toy", "HEAD", tmp_path)
        commit(tmp_path, {path: FILES[path] + "\n# changed\n"})
        assert source_hash("alpha", "toy", "HEAD", tmp_path) != before, path
    assert source_hash("alpha", "toy", "0" * 40, tmp_path) is None  # not a commit of this repository
