"""How the daemon serves its app: the listening socket, uvicorn's limits and timeouts, TLS.

- The socket is made as a TCP socket (``IPPROTO_TCP``) with ``TCP_NODELAY``: asyncio sets
  ``TCP_NODELAY`` on an accepted connection only when the listener says it is TCP, and
  without it a response written in two parts waits for the client's delayed ACK (about
  40 ms on every request of a kept-alive connection; ``bench/keepalive.py``).
- Idle connections are closed: uvicorn's keep-alive timeout after a response, and a header
  timeout of our own (uvicorn has none): a connection whose request headers are not all in
  within :attr:`ServeLimits.header_timeout_s` of its opening, or of its previous response,
  is closed, however many bytes trickle in. A request whose body stops arriving gets a 408
  from the guard (``DaemonConfig.body_timeout_s``), and a connection whose request body was
  not read to its end (a 408, a 413) is closed after the answer.
- At most :attr:`ServeLimits.max_connections` connections are served at once (uvicorn's
  ``limit_concurrency``: beyond it, 503), and request headers may hold
  :attr:`ServeLimits.max_header_bytes` (uvicorn's ``h11_max_incomplete_event_size``).
- TLS through uvicorn's own options, when the daemon is given a certificate and its key.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

#: connections served at once by default: above the 100 of an httpx client's pool (the
#: planner's), so one planner submitting many jobs at once is never turned away
MAX_CONNECTIONS = 128
#: seconds a request's headers may take to arrive, by default
HEADER_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class ServeLimits:
    """The limits and timeouts of the daemon's HTTP server."""

    keep_alive_s: int = 5
    """An idle kept-alive connection is closed after this (uvicorn's ``timeout_keep_alive``)."""
    header_timeout_s: float = HEADER_TIMEOUT_S
    """A request's headers must all arrive within this."""
    max_connections: int = MAX_CONNECTIONS
    """Connections (and requests) served at once; beyond it uvicorn answers 503."""
    max_header_bytes: int = 16 * 1024
    """The request line and headers (h11's ``max_incomplete_event_size``)."""
    tls_cert: Path | None = None
    tls_key: Path | None = None


class BindFailed(OSError):
    """The socket cannot listen on the address given."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket with ``TCP_NODELAY``; bound before serving, so ``--port 0``
    can report its port.

    Raises:
        BindFailed: the address is taken or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when it sees it
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # Linux: accepted ones inherit it
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise BindFailed(e.errno, f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)
    return sock


class _TimedH11(H11Protocol):
    """uvicorn's h11 protocol with a header timeout (see the module docstring)."""

    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._stop_header_timer()  # the request's headers are in

    def on_response_complete(self) -> None:
        # answered before its body was all in (a 408, a 413): the rest of the body cannot be
        # told from a next request, so the connection ends with this answer
        body_unread = self.conn.their_state is h11.SEND_BODY
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if body_unread:
            self.transport.close()
            return
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        self._stop_header_timer()
        if self.conn.their_state is h11.IDLE:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._timed_out)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _timed_out(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def uvicorn_config(asgi: Any, limits: ServeLimits) -> Any:
    """The uvicorn configuration that serves ``asgi`` within ``limits``."""
    import uvicorn

    protocol = type("TimedH11", (_TimedH11,), {"header_timeout_s": limits.header_timeout_s})
    return uvicorn.Config(
        asgi,
        http=protocol,
        log_level="warning",
        access_log=False,  # keep logs free of anything request-shaped
        timeout_graceful_shutdown=10,
        lifespan="on",
        timeout_keep_alive=limits.keep_alive_s,
        limit_concurrency=limits.max_connections,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        ssl_certfile=str(limits.tls_cert) if limits.tls_cert else None,
        ssl_keyfile=str(limits.tls_key) if limits.tls_key else None,
    )


def serve(asgi: Any, sock: socket.socket, limits: ServeLimits) -> None:
    """Serve ``asgi`` on ``sock`` until SIGTERM or SIGINT."""
    import uvicorn

    uvicorn.Server(uvicorn_config(asgi, limits)).run(sockets=[sock])
