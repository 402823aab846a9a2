"""Download, checksum, cache and extraction rules, against a loopback HTTP server (no network)."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

from pfl.data import cache, shakespeare
from pfl.data.download import DataError, Remote, extract, fetch
from tests.helpers import REPO


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    lie_length: dict[str, int] = {}  # path -> Content-Length to announce (truncated bodies)
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        self.hits.append(self.path)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(self.lie_length.get(self.path, len(body))))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    _Handler.files, _Handler.lie_length, _Handler.hits = {}, {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()


def _remote(url: str, body: bytes, name="data.bin") -> Remote:
    return Remote(name, f"{url}/{name}", sha256=hashlib.sha256(body).hexdigest())


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*")) if directory.exists() else []


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_download_verifies_and_is_kept(server, tmp_path):
    url, h = server
    body = b"federated" * 1000
    h.files["/data.bin"] = body
    path = fetch(_remote(url, body), tmp_path, progress=False)
    assert path.read_bytes() == body
    assert _leftovers(tmp_path) == ["data.bin"]
    fetch(_remote(url, body), tmp_path, progress=False)  # cached: verified, not downloaded again
    assert h.hits == ["/data.bin"]


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    url, h = server
    h.files["/data.bin"] = b"tampered bytes"
    with pytest.raises(DataError) as exc:
        fetch(_remote(url, b"the real bytes"), tmp_path, progress=False)
    msg = _one_line(exc)
    assert "does not match its published sha256" in msg and f"{url}/data.bin" in msg and str(tmp_path / "data.bin") in msg
    assert _leftovers(tmp_path) == []


def test_truncated_download_leaves_nothing(server, tmp_path):
    url, h = server
    body = b"x" * 5000
    h.files["/data.bin"] = body[:1000]
    h.lie_length["/data.bin"] = len(body)
    with pytest.raises(DataError) as exc:
        fetch(_remote(url, body), tmp_path, progress=False)
    msg = _one_line(exc)
    assert "data.bin" in msg and ("truncated" in msg or "broke off" in msg)
    assert _leftovers(tmp_path) == []


def test_offline_names_file_url_and_manual_location(tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    remote = Remote("fed_emnist.tar.bz2", f"http://127.0.0.1:{port}/fed_emnist.tar.bz2", sha256="0" * 64)
    with pytest.raises(DataError) as exc:
        fetch(remote, tmp_path / "emnist", progress=False, timeout=5)
    msg = _one_line(exc)
    assert "cannot download fed_emnist.tar.bz2" in msg and remote.url in msg
    assert str(tmp_path / "emnist" / "fed_emnist.tar.bz2") in msg and "dataset.root" in msg
    assert _leftovers(tmp_path / "emnist") == []


def test_corrupted_cached_file_is_refused(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"half a fi")
    remote = Remote("data.bin", "http://127.0.0.1:9/data.bin", sha256=hashlib.sha256(b"half a file").hexdigest())
    with pytest.raises(DataError) as exc:
        fetch(remote, tmp_path, progress=False)
    assert "corrupted or incomplete" in _one_line(exc)


def _tar(members: dict[str, bytes], mode="w:bz2", link: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("name", ["../train", "/abs/train", "a/../../train"])
def test_extraction_refuses_path_traversal(tmp_path, name):
    archive = tmp_path / "a.tar.bz2"
    archive.write_bytes(_tar({name: b"evil"}))
    with pytest.raises(DataError, match="unsafe member"):
        extract(archive, ["train"], tmp_path / "out")
    assert not (tmp_path / "train").exists() and _leftovers(tmp_path / "out") == []


def test_extraction_refuses_links_and_missing_members(tmp_path):
    archive = tmp_path / "a.tar.bz2"
    archive.write_bytes(_tar({"dir/test": b"ok"}, link="dir/train"))
    with pytest.raises(DataError, match="not a regular file"):
        extract(archive, ["train", "test"], tmp_path / "out")
    archive.write_bytes(_tar({"dir/test": b"ok"}))
    with pytest.raises(DataError, match="does not contain train"):
        extract(archive, ["train", "test"], tmp_path / "out")
    assert extract(archive, ["test"], tmp_path / "out")["test"].read_bytes() == b"ok"


def _tiny_shakespeare_h5(path: Path, clients: dict[str, list[bytes]]) -> None:
    with h5py.File(path, "w") as f:
        for cid, snippets in clients.items():
            f.create_dataset(f"examples/{cid}/snippets", data=np.array(snippets, dtype=object),
                             dtype=h5py.string_dtype("ascii"))


def test_archive_download_decode_and_offline_second_start(server, tmp_path, monkeypatch):
    """The whole path: download the .tar.bz2, verify, extract safely, decode, cache .npz;
    the second start needs neither the network nor the archive's extraction."""
    url, h = server
    src = tmp_path / "src"
    src.mkdir()
    clients = {"B": [b"To be, or not", b"that is"], "A": [b"Hi"], "C": [b"Yes"]}
    _tiny_shakespeare_h5(src / "shakespeare_train.h5", clients)
    _tiny_shakespeare_h5(src / "shakespeare_test.h5", {k: [b"!"] for k in clients})
    body = _tar({f"shakespeare/{n}": (src / n).read_bytes() for n in ("shakespeare_train.h5", "shakespeare_test.h5")})
    h.files["/shakespeare.tar.bz2"] = body
    remote = _remote(url, body, "shakespeare.tar.bz2")
    monkeypatch.setattr(shakespeare, "SOURCE", cache.Source("shakespeare", shakespeare.SOURCE.files, remote))
    cache_dir = tmp_path / "cache"
    data = shakespeare.load_shakespeare(cache_dir=str(cache_dir), train_clients=2, progress=False)
    assert data.train.client_ids == ["A", "B"] and data.heldout.client_ids == ["C"]
    assert data.info["snippets"] == {"train": 4, "test": 3}
    # kept: the verified archive and the decoded arrays; no extracted or partial files
    assert _leftovers(cache_dir / "shakespeare") == ["shakespeare-seq80-" + remote.digest[:16] + "-v1.npz",
                                                    "shakespeare.tar.bz2"]
    h.files.clear()  # "offline": the server no longer has the file
    (cache_dir / "shakespeare" / "shakespeare.tar.bz2").unlink()
    again = shakespeare.load_shakespeare(cache_dir=str(cache_dir), train_clients=2, progress=False)
    assert again.train.train.x.equal(data.train.train.x) and h.hits == ["/shakespeare.tar.bz2"]


def test_damaged_decoded_cache_is_rebuilt(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    _tiny_shakespeare_h5(root / "shakespeare_train.h5", {"A": [b"abc"], "B": [b"de"]})
    _tiny_shakespeare_h5(root / "shakespeare_test.h5", {"A": [b"f"], "B": [b"g"]})
    first = shakespeare.load_shakespeare(root=str(root), cache_dir=str(tmp_path / "c"), train_clients=1)
    (npz,) = (tmp_path / "c" / "shakespeare").glob("*.npz")
    npz.write_bytes(npz.read_bytes()[:100])  # a damaged cache file
    again = shakespeare.load_shakespeare(root=str(root), cache_dir=str(tmp_path / "c"), train_clients=1)
    assert again.train.train.y.equal(first.train.train.y)


@pytest.mark.slow  # real `python -m pfl` processes
def test_cli_prints_one_line_for_missing_files(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pfl", "dataset=shakespeare", f"dataset.root={tmp_path}", f"hydra.run.dir={tmp_path}/run"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "PFL_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "disabled"},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "shakespeare_train.h5" in lines[0] and str(tmp_path) in lines[0]
    assert "Traceback" not in proc.stderr
