"""An emulator as another machine's LM Studio: reached through this machine's network address, not loopback.

The emulator listens on 127.0.0.1 only, so a small TCP relay on the machine's own non-loopback address
forwards to it: the core sees a URL whose host is not this machine's loopback, exactly what an instance on
another machine of the network looks like (no `lms`, no memory estimate, loads over HTTP).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit


def network_address() -> str:
    """This machine's IPv4 address on its network (the one its default route leaves from)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1; a UDP connect sends nothing, it only picks the route
        except OSError as exc:
            raise AssertionError(f"this test needs a network address besides loopback: {exc}") from None
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        raise AssertionError("this test needs a network address besides loopback; the default route is loopback")
    return address


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def remote_url(api_url: str) -> Iterator[str]:
    """`api_url` (an emulator's) as a URL on this machine's network address, for as long as the block runs."""
    target = urlsplit(api_url)
    listener = socket.create_server((network_address(), 0))
    host, port = listener.getsockname()[:2]
    conns: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                upstream = socket.create_connection((target.hostname, target.port))
                conns.extend((client, upstream))
                threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
                threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://{host}:{port}{target.path}"
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() at once
        listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()
        acceptor.join(timeout=5)
