"""No network while models are built (bnlint.model.offline): every way model code
downloads fails at once with a marked error, and a factory with a ``pretrained`` /
``weights`` parameter is built again without the download."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from bnlint.model.offline import NetworkBlocked, build_without_downloads, download_error

ATTEMPTS = textwrap.dedent("""
    import json, socket, time, urllib.request, urllib.error, http.client
    import torch.hub, torch.utils.model_zoo
    from bnlint.model.offline import block_network, download_error
    block_network()
    out = {}
    def attempt(name, fn):
        start = time.monotonic()
        try:
            fn()
            out[name] = "no error"
        except Exception as exc:
            blocked = download_error(exc)
            out[name] = [type(exc).__name__, blocked is not None, round(time.monotonic() - start, 2)]
    url = "https://download.example.org/weights/resnet18-f37072fd.pth"
    attempt("hub", lambda: torch.hub.load_state_dict_from_url(url))
    attempt("hub_file", lambda: torch.hub.download_url_to_file(url, "w.pth"))
    attempt("model_zoo", lambda: torch.utils.model_zoo.load_url(url))
    attempt("hub_load", lambda: torch.hub.load("someone/repo", "resnet18"))
    attempt("urlopen", lambda: urllib.request.urlopen(url))
    attempt("urlretrieve", lambda: urllib.request.urlretrieve(url, "w.pth"))
    attempt("http_client", lambda: http.client.HTTPSConnection("download.example.org").request("GET", "/"))
    attempt("socket", lambda: socket.create_connection(("10.255.255.1", 80), timeout=30))
    attempt("raw_socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(("10.255.255.1", 80)))
    attempt("dns", lambda: socket.getaddrinfo("download.example.org", 443))
    a, b = socket.socketpair()  # local sockets still work (multiprocessing uses them)
    a.sendall(b"x"); out["socketpair"] = b.recv(1).decode()
    print(json.dumps(out))
""")


def test_every_download_fails_at_once_with_a_marked_error(tmp_path):
    proc = subprocess.run([sys.executable, "-c", ATTEMPTS], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out.pop("socketpair") == "x"
    for name, (exc_type, marked, seconds) in out.items():
        assert marked, (name, exc_type)
        assert seconds < 1.0, (name, seconds)  # never waits on a network
    assert not (tmp_path / "w.pth").exists()


def _refuse_download(url="https://download.example.org/w.pth"):
    try:
        raise NetworkBlocked(f"download of {url}")
    except NetworkBlocked as inner:
        raise RuntimeError("Error loading pretrained weights") from inner


def test_factory_with_pretrained_is_built_again_without_it():
    calls = []

    def resnet_cifar(pretrained=True, num_classes=10):
        calls.append((pretrained, num_classes))
        if pretrained:
            _refuse_download()
        return "model"

    model, note = build_without_downloads(resnet_cifar, (), {"num_classes": 100})
    assert model == "model" and calls == [(True, 100), (False, 100)]
    assert "pretrained=False" in note and "download.example.org" in note

    def efficientnet(*, weights="DEFAULT", progress=True):
        if weights is not None:
            _refuse_download()
        return "built"

    model, note = build_without_downloads(efficientnet, (), {})
    assert model == "built" and "weights=None" in note


def test_factory_that_always_downloads_keeps_its_error():
    def hub_model():
        _refuse_download()

    with pytest.raises(RuntimeError) as info:
        build_without_downloads(hub_model, (), {})
    assert download_error(info.value) is not None

    def broken(pretrained=False):
        raise ValueError("not a download")

    with pytest.raises(ValueError):
        build_without_downloads(broken, (), {})
