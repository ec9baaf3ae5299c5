"""Data resolution order and the verified download, against a real HTTP server on loopback."""
import hashlib
import http.server
import json
import threading

import pytest

from datadir import data_dir
from editbench.data import DataFile, first_json_records, resolve
from editbench.errors import EditbenchError

ZSRE = "zsre/zsre_mend_train_800.json"
ZSRE_SHA = "b4ee6022a6af72816a44dfa0f7f9e800921d71ef4254f51d6d9d6c60c86a2406"


@pytest.fixture
def server():
    """Serve a folder over HTTP on 127.0.0.1 (first `$EDITBENCH_DATA`); yields (folder setter, base URL)."""
    state = {"root": data_dir()}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def translate_path(self, path):
            return str(state["root"] / path.lstrip("/"))

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def empty_env(tmp_path, monkeypatch):
    monkeypatch.delenv("EDITBENCH_DATA", raising=False)
    monkeypatch.delenv("EDITBENCH_DATA_MIRROR", raising=False)
    monkeypatch.setenv("EDITBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_resolution_order(empty_env, monkeypatch):
    shared = data_dir()
    spec = DataFile(ZSRE, ZSRE_SHA, "http://127.0.0.1:9/none")
    explicit = empty_env / "explicit"
    (explicit / "zsre").mkdir(parents=True)
    (explicit / ZSRE).write_bytes((shared / ZSRE).read_bytes())  # a verified copy
    monkeypatch.setenv("EDITBENCH_DATA", str(shared))
    assert resolve(spec, explicit) == explicit / ZSRE
    assert resolve(spec) == shared / ZSRE


def test_download_from_mirror_is_verified_and_cached(empty_env, server, monkeypatch):
    _, url = server
    monkeypatch.setenv("EDITBENCH_DATA_MIRROR", url)
    path = resolve(DataFile(ZSRE, ZSRE_SHA, "http://example.invalid/x"))
    assert path == empty_env / "cache" / "data" / ZSRE
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ZSRE_SHA
    monkeypatch.setenv("EDITBENCH_DATA_MIRROR", "http://127.0.0.1:9")  # now cached: no download
    assert resolve(DataFile(ZSRE, ZSRE_SHA, "http://example.invalid/x")) == path


def test_public_source_transform_reproduces_the_file(empty_env, server, tmp_path):
    """The public 1k zsRE sample, cut to 800 records, gives exactly our file's sha256."""
    state, url = server
    records = json.loads((state["root"] / ZSRE).read_text())
    source = tmp_path / "source"
    source.mkdir()
    (source / "zsre_mend_train-1k.json").write_text(json.dumps(records + records[:200], indent=4))
    state["root"] = source
    spec = DataFile(ZSRE, ZSRE_SHA, f"{url}/zsre_mend_train-1k.json", transform=first_json_records(800))
    assert hashlib.sha256(resolve(spec).read_bytes()).hexdigest() == ZSRE_SHA


def test_bad_checksum_leaves_nothing(empty_env, server):
    _, url = server
    spec = DataFile(ZSRE, "0" * 64, f"{url}/{ZSRE}")
    with pytest.raises(EditbenchError, match="expected 0000"):
        resolve(spec)
    assert not (empty_env / "cache" / "data" / ZSRE).exists()


def test_offline_says_what_failed(empty_env):
    with pytest.raises(EditbenchError, match="could not download zsre/.*EDITBENCH_DATA"):
        resolve(DataFile(ZSRE, ZSRE_SHA, "http://127.0.0.1:9/nothing-here"))
