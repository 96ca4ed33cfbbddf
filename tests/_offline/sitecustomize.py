"""The test suite's network guard: every connection to a non-loopback address is refused.

`tests/conftest.py` installs it in the pytest process and puts this directory on PYTHONPATH
with MEDMM_DENY_NETWORK=1, so that every Python process the tests start (spawned fine-tuning
workers, torchrun ranks, the `medmm` command in a subprocess) imports it as `sitecustomize` and
is guarded too. A refused attempt raises `NetworkBlocked` (not an OSError, which a library could
take for a transient failure and swallow) and is appended to the file MEDMM_NETGUARD_LOG, which
the pytest session checks at its end. Connections made inside C++ (gloo's TCP store) are not
seen here; they go to the loopback address the tests give them.
"""

from __future__ import annotations

import ipaddress
import os
import socket

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


class NetworkBlocked(RuntimeError):
    pass


def is_loopback(host: object) -> bool:
    """Whether a host (name or address literal, str or bytes, or None) is this machine's loopback."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip("[]").split("%", 1)[0].lower()
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name would need a DNS look-up, which is network too


def _refuse(what: str, target: object) -> None:
    msg = f"network access refused in the test suite: {what} {target!r} (pid {os.getpid()})"
    log = os.environ.get("MEDMM_NETGUARD_LOG")
    if log:
        with open(log, "a") as f:
            f.write(msg + "\n")
    raise NetworkBlocked(msg)


def _check_address(sock: socket.socket, address: object) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0] if isinstance(address, tuple) else address
        if not is_loopback(host):
            _refuse("connect to", address)


def install() -> None:
    """Wrap socket.connect / connect_ex / getaddrinfo; idempotent."""
    if getattr(socket.socket.connect, "_medmm_guard", False):
        return
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def guarded_connect(self, address):
        _check_address(self, address)
        return connect(self, address)

    def guarded_connect_ex(self, address):
        _check_address(self, address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not is_loopback(host):
            _refuse("name look-up of", host)
        return getaddrinfo(host, *args, **kwargs)

    for f in (guarded_connect, guarded_connect_ex, guarded_getaddrinfo):
        f._medmm_guard = True
    socket.socket.connect, socket.socket.connect_ex = guarded_connect, guarded_connect_ex
    socket.getaddrinfo = guarded_getaddrinfo


if os.environ.get("MEDMM_DENY_NETWORK") == "1":
    install()
