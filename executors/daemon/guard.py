"""The HTTP guard: Host/Origin checks, the bearer token, the body's size and its arrival
time, before routing.

It is pure ASGI middleware around the whole app, so every route (the OpenAPI docs
included) is covered, and a refused request never reaches a route. Every refusal has the
daemon's error body ``{code, field, message}``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from fastapi.responses import JSONResponse

from executors.daemon.config import DaemonConfig
from executors.protocol import ErrorBody

_Receive = Callable[[], Awaitable[dict[str, Any]]]
_Send = Callable[[dict[str, Any]], Awaitable[None]]


def error_response(
    status: int, code: str, message: str, field_: str | None = None, **headers: str
) -> JSONResponse:
    """A JSON error answer with the body ``{code, field, message}``.

    The field and message may quote what a client sent; a lone surrogate in it (which
    cannot be encoded) is written as its escape instead.
    """
    body = ErrorBody(
        code=code, field=None if field_ is None else _printable(field_), message=_printable(message)
    ).model_dump()
    return JSONResponse(body, status_code=status, headers=headers or None)


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def host_name(host: str) -> str:
    """The name part of a ``Host`` header (``[::1]:8765`` → ``[::1]``)."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware that refuses what the daemon does not serve (see the module)."""

    def __init__(self, app: Any, cfg: DaemonConfig) -> None:
        self.app = app
        self.cfg = cfg
        self._token = cfg.token.encode()

    async def __call__(self, scope: dict[str, Any], receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        deny = self._check(headers) or self._check_length(headers)
        if deny is not None:
            await deny(scope, receive, send)
            return
        try:
            with anyio.fail_after(self.cfg.body_timeout_s):
                body = await self._read_body(receive)
        except TimeoutError:
            timeout = self.cfg.body_timeout_s
            await error_response(
                408, "body_timeout", f"the request body did not arrive within {timeout:.0f} s"
            )(scope, receive, send)
            return
        if body is None:
            return  # the client went away
        if len(body) > self.cfg.max_body_bytes:
            await self._too_large()(scope, receive, send)
            return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, receive: _Receive) -> bytes | None:
        """Read the body here, up to one byte over the limit, so chunked uploads meet the
        same limit as those that declare their length; None when the client disconnected."""
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.cfg.max_body_bytes:
                break
        return body

    def _too_large(self) -> JSONResponse:
        return error_response(
            413,
            "body_too_large",
            f"the request body exceeds {self.cfg.max_body_bytes} bytes",
        )

    def _check_length(self, headers: dict[str, bytes]) -> JSONResponse | None:
        length = headers.get("content-length")
        if length is None:
            return None
        try:
            n = int(length)
        except ValueError:
            return error_response(400, "bad_request", "Content-Length is not a number")
        return self._too_large() if n > self.cfg.max_body_bytes else None

    def _check(self, headers: dict[str, bytes]) -> JSONResponse | None:
        if "origin" in headers:
            # No browser has any business here; refusing Origin stops cross-site requests.
            return error_response(
                403, "origin_refused", "requests from a browser origin are refused"
            )
        host = headers.get("host", b"").decode("latin-1").lower()
        if self.cfg.allowed_hosts and host_name(host) not in self.cfg.allowed_hosts:
            return error_response(403, "host_refused", "this Host is not served here", "Host")
        if not self._authorized(headers.get("authorization", b"")):
            return error_response(
                401,
                "unauthorized",
                "missing or wrong bearer token (header `Authorization: Bearer <token>`)",
                "Authorization",
                **{"WWW-Authenticate": "Bearer"},
            )
        return None

    def _authorized(self, header: bytes) -> bool:
        """``Bearer <token>``, the scheme in any case (RFC 7235), the token compared in
        constant time."""
        scheme, _, credentials = header.partition(b" ")
        token_ok = hmac.compare_digest(credentials.lstrip(b" "), self._token)
        return scheme.lower() == b"bearer" and token_ok
