"""No network, proven: the suite's guard refuses non-loopback connections in this process and in
the processes it starts, and the CLI switches Hugging Face to offline unless the user chose."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest

from medmm import cli


def test_guard_classifies_addresses():
    import medmm_netguard as g

    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", b"127.0.0.1", None, ""):
        assert g.is_loopback(host), host
    for host in ("10.0.0.1", "192.168.1.1", "8.8.8.8", "2001:db8::1", "::ffff:10.0.0.1", "example.org",
                 "huggingface.co", "0.0.0.0"):
        assert not g.is_loopback(host), host


def test_guard_is_installed_here_and_refuses_before_any_packet(tmp_path, monkeypatch):
    import medmm_netguard as g

    assert getattr(socket.socket.connect, "_medmm_guard", False)
    assert getattr(socket.getaddrinfo, "_medmm_guard", False)
    log = tmp_path / "attempts.log"  # not the session's log, which would fail the run at its end
    monkeypatch.setenv("MEDMM_NETGUARD_LOG", str(log))
    # A name look-up is refused before it reaches a resolver, so nothing leaves the machine.
    with pytest.raises(g.NetworkBlocked, match="name look-up"):
        socket.getaddrinfo("huggingface.co", 443)
    assert "huggingface.co" in log.read_text()
    # Not an OSError: a library's retry-on-connection-error cannot swallow it.
    assert not issubclass(g.NetworkBlocked, OSError)


def test_loopback_connections_still_work():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    t = threading.Thread(target=lambda: srv.accept()[0].sendall(b"ok"))
    t.start()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        assert c.recv(2) == b"ok"
    t.join()
    srv.close()


def test_child_processes_are_guarded():
    code = "import socket; print(getattr(socket.socket.connect, '_medmm_guard', False))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_cli_sets_hf_offline_unless_the_user_did(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")  # the user's own choice stays
    assert cli.main(["summary", "/nonexistent/medmm-dataset"]) == 2
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "0"


def test_console_script_imports_hugging_face_offline(tmp_path):
    # In a fresh process the switch is set before huggingface_hub reads it at import.
    code = ("import os, sys; from medmm import cli; os.environ.pop('HF_HUB_OFFLINE', None); "
            "cli.set_offline_defaults(); import huggingface_hub.constants as k; print(k.HF_HUB_OFFLINE)")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "True"
