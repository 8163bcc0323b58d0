"""alexnet-weights: fetch (through a local HTTP server, never the network) and verify, by SHA-256."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from alexnet.cli import weights
from alexnet.cli.weights import KNOWN_WEIGHTS, KnownWeights, main, name_prefix

PAYLOAD = b"not really alexnet weights\n" * 100


def _prefix(data: bytes = PAYLOAD) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves `body` at any path; `length` is the Content-Length sent (None: no header, close at end)."""

    body = PAYLOAD
    length: int | None = len(PAYLOAD)

    def do_GET(self) -> None:
        self.send_response(200)
        if self.length is not None:
            self.send_header("Content-Length", str(self.length))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    """(base URL, handler class) of an HTTP server on 127.0.0.1, in a thread."""
    handler = type("Handler", (_Handler,), {})
    httpd = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _publish(monkeypatch, url: str) -> KnownWeights:
    """Make `fetch torchvision` download `url` (its name carries the prefix it is checked against)."""
    known = KnownWeights(url, "test weights")
    monkeypatch.setitem(KNOWN_WEIGHTS, "torchvision", known)
    return known


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), prog_name="alexnet-weights")


def _one_line_error(result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.output.strip().count("\n") == 0, result.output
    return result.output


def test_the_published_table():
    known = KNOWN_WEIGHTS["torchvision"]
    assert known.file_name == "alexnet-owt-7be5be79.pth" and known.sha256_prefix == "7be5be79"
    assert known.url == "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
    assert name_prefix("resnet-50.pth") is None and name_prefix("x-ABCDEF12.pth") == "abcdef12"


def test_fetch_saves_the_checked_file_under_its_name(server, monkeypatch, tmp_path):
    base, _ = server
    known = _publish(monkeypatch, f"{base}/x-{_prefix()}.pth")
    result = _invoke("fetch", "torchvision", "-o", str(tmp_path))  # a folder: the published name in it
    assert result.exit_code == 0, result.output
    saved = tmp_path / known.file_name
    assert saved.read_bytes() == PAYLOAD and os.listdir(tmp_path) == [known.file_name]
    assert hashlib.sha256(PAYLOAD).hexdigest() in result.output
    again = _invoke("fetch", "torchvision", "-o", str(saved))
    assert again.exit_code == 0 and "already there" in again.output


def test_fetch_default_destination_and_file_url(monkeypatch, tmp_path):
    source = tmp_path / "src" / f"x-{_prefix()}.pth"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    _publish(monkeypatch, source.as_uri())
    monkeypatch.chdir(tmp_path)
    result = _invoke("fetch", "torchvision", "--quiet")
    assert result.exit_code == 0, result.output
    assert (tmp_path / source.name).read_bytes() == PAYLOAD


def test_fetch_hash_mismatch_leaves_nothing(server, monkeypatch, tmp_path):
    base, _ = server
    _publish(monkeypatch, f"{base}/x-{_prefix(b'other')}.pth")
    out = tmp_path / "w.pth"
    error = _one_line_error(_invoke("fetch", "torchvision", "-o", str(out)))
    assert "SHA-256" in error and _prefix(b"other") in error
    assert os.listdir(tmp_path) == []


def test_fetch_mismatch_keeps_an_earlier_file(server, monkeypatch, tmp_path):
    base, _ = server
    _publish(monkeypatch, f"{base}/x-{_prefix(b'other')}.pth")
    out = tmp_path / "w.pth"
    out.write_bytes(b"earlier")
    result = _invoke("fetch", "torchvision", "-o", str(out))
    assert result.exit_code == 1 and out.read_bytes() == b"earlier" and os.listdir(tmp_path) == ["w.pth"]


def test_fetch_unreachable_is_one_line(monkeypatch, tmp_path):
    url = f"http://127.0.0.1:{_free_port()}/x-{_prefix()}.pth"  # nothing listens there
    _publish(monkeypatch, url)
    error = _one_line_error(_invoke("fetch", "torchvision", "-o", str(tmp_path / "w.pth")))
    assert f"could not reach {url}" in error and "alexnet-weights verify FILE" in error
    assert os.listdir(tmp_path) == []


def test_fetch_mirror_url_is_still_checked(server, monkeypatch, tmp_path):
    base, _ = server
    _publish(monkeypatch, f"http://127.0.0.1:{_free_port()}/x-{_prefix()}.pth")
    result = _invoke("fetch", "torchvision", "--url", f"{base}/mirror.bin", "-o", str(tmp_path / "w.pth"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "w.pth").read_bytes() == PAYLOAD


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "no-content-length"])
def test_fetch_refuses_oversize(server, monkeypatch, tmp_path, declared):
    base, handler = server
    handler.length = len(PAYLOAD) if declared else None
    monkeypatch.setattr(weights, "MAX_DOWNLOAD_BYTES", len(PAYLOAD) - 1)
    _publish(monkeypatch, f"{base}/x-{_prefix()}.pth")
    error = _one_line_error(_invoke("fetch", "torchvision", "-o", str(tmp_path / "w.pth")))
    assert "refused" in error and os.listdir(tmp_path) == []


def test_fetch_truncated_download(server, monkeypatch, tmp_path):
    base, handler = server
    handler.length = len(PAYLOAD) + 100  # claims more than it sends, then closes
    _publish(monkeypatch, f"{base}/x-{_prefix()}.pth")
    error = _one_line_error(_invoke("fetch", "torchvision", "-o", str(tmp_path / "w.pth")))
    assert "nothing was saved" in error and os.listdir(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fetch_never_writes_into_a_fifo(monkeypatch, tmp_path):
    _publish(monkeypatch, f"http://127.0.0.1:{_free_port()}/x-{_prefix()}.pth")
    fifo = tmp_path / "w.pth"
    os.mkfifo(fifo)
    error = _one_line_error(_invoke("fetch", "torchvision", "-o", str(fifo)))
    assert "not a file" in error


def _weights_file(tmp_path: Path, data: bytes = PAYLOAD) -> Path:
    path = tmp_path / f"x-{_prefix(data)}.pth"
    path.write_bytes(data)
    return path


def test_verify_ok(tmp_path):
    path = _weights_file(tmp_path)
    result = _invoke("verify", str(path))
    assert result.exit_code == 0, result.output
    assert hashlib.sha256(PAYLOAD).hexdigest() in result.output and "OK" in result.output


def test_verify_with_explicit_prefix_and_names_known_weights(monkeypatch, tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(PAYLOAD)
    _publish(monkeypatch, f"https://example.invalid/x-{_prefix()}.pth")
    result = _invoke("verify", str(path), "--sha256", _prefix().upper())
    assert result.exit_code == 0 and "torchvision: test weights" in result.output, result.output


def test_verify_mismatch(tmp_path):
    path = tmp_path / f"x-{_prefix(b'other')}.pth"
    path.write_bytes(PAYLOAD)
    error = _one_line_error(_invoke("verify", str(path)))
    assert hashlib.sha256(PAYLOAD).hexdigest() in error and _prefix(b"other") in error
    assert _one_line_error(_invoke("verify", str(_weights_file(tmp_path)), "--sha256", "00000000"))


def test_verify_needs_a_regular_file(tmp_path):
    folder = tmp_path / f"x-{_prefix()}.pth"
    folder.mkdir()
    assert "not a regular file" in _one_line_error(_invoke("verify", str(folder)))
    assert "No such file" in _one_line_error(_invoke("verify", str(tmp_path / f"y-{_prefix()}.pth")))


def test_verify_without_a_prefix_is_a_usage_error(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(PAYLOAD)
    result = _invoke("verify", str(path))
    assert result.exit_code == 2 and "--sha256" in result.output
    assert _invoke("verify", str(path), "--sha256", "xyz").exit_code == 2
