"""``BodyLimitMiddleware``: no request body past ``max_size`` bytes is read, whoever reads it.

Every route of the sign-in server (the plugins' too) sits behind it, so a
view that reads a form or JSON never holds more than ``max_size`` bytes, and
several huge uploads at once cost no memory. A ``Content-Length`` over the
limit is answered before the app runs, without reading a byte (a client that
sent ``Expect: 100-continue`` never sends the body). A body without one
(chunked) is counted as the app reads it: the read that passes the limit
raises ``RequestTooLarge``, and the answer is 413.

The 413 says ``Connection: close``, so the server closes the connection
rather than read and discard the rest of a body it will never use.
"""

from __future__ import annotations

from .._answers import send_error
from .._types import ASGIApp, Message, Receive, Scope, Send
from ..exceptions import RequestTooLarge

__all__ = ["BodyLimitMiddleware"]

#: Longer than any Content-Length a server lets through (and int() would refuse 4,300 digits).
_MAX_DIGITS = 18


class BodyLimitMiddleware:
    """Answers 413 to an http request whose body is larger than ``max_size`` bytes."""

    def __init__(self, app: ASGIApp, *, max_size: int) -> None:
        self.app = app
        self.max_size = max_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _declared_too_large(scope, self.max_size):
            await self._refuse(scope, send)
            return
        received = 0
        started = False

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_size:
                    raise RequestTooLarge(f"the request body is over {self.max_size} bytes")
            return message

        async def noting_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, noting_send)
        except RequestTooLarge:
            if started:
                raise  # a route that answered before reading all of it: nothing left to say
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        message = f"The request is too large: doorman reads at most {self.max_size} bytes."
        await send_error(scope, send, 413, message, [(b"connection", b"close")])


def _declared_too_large(scope: Scope, max_size: int) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            digits = bytes(value).strip()
            if digits.isdigit() and (len(digits) > _MAX_DIGITS or int(digits) > max_size):
                return True
    return False
