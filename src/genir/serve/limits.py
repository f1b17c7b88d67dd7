"""What the service takes from a client: a request body within its size, in its time."""

from __future__ import annotations

import asyncio
import json

BODY_TIMEOUT = 10.0  # seconds a request body may take to arrive (between its parts)
DRAIN_BYTES = 64 << 20  # an oversized declared body is read and dropped up to this, so that the 413 arrives


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes, declared (Content-Length) or streamed (chunked), is
    answered 413 without passing it on; a body that does not arrive within ``timeout`` seconds is answered
    408; both close the connection. A body within both is handed to the app whole."""

    def __init__(self, app, limit: int, timeout: float = BODY_TIMEOUT):
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                declared = int(declared)
            except ValueError:
                return await _plain(send, 400, "Content-Length is not a number")
        too_big = f"the body is larger than {self.limit} bytes"
        if declared is not None and declared > self.limit:
            if declared <= DRAIN_BYTES:  # read what the client sends, so that it reads the answer (no reset)
                await self._drain(receive)
            return await _plain(send, 413, too_big)
        chunks, seen, more = [], 0, True
        while more:
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                return await _plain(send, 408, f"the request body did not arrive within {self.timeout:g} s")
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            seen += len(chunk)
            more = message.get("more_body", False)
            if seen > self.limit:
                if more:
                    await self._drain(receive, seen)
                return await _plain(send, 413, too_big)
            chunks.append(chunk)
        body, given = b"".join(chunks), False

        async def replay():
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the client's disconnect, when it comes

        return await self.app(scope, replay, send)

    async def _drain(self, receive, seen: int = 0) -> None:
        while seen <= DRAIN_BYTES:
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                return
            seen += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                return


async def _plain(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
