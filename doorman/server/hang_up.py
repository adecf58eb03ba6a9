"""``HangUpMiddleware``: a sign-in whose client hung up is not checked for nobody.

Servers do not cancel a request when its client goes away (uvicorn does not),
so a sign-in that waits for a slot behind checks in flight (see
``doorman.accounts.slots``) would still get its turn and its password check,
and a queue of abandoned requests would cost memory and checks. Once a POST's
body is read, this middleware listens on the connection for the client's
``http.disconnect`` and marks ``client_gone`` for the request: the attempt then
stops waiting (``Abandoned``, logged as 499) and gives back unused any slots
it was granted.

The app's own reads after the body (Starlette's disconnect checks) get the
same disconnect message: the connection has one reader. A disconnect once the
answer is sent is no hang-up (servers report one when the response ends), and
work the request hands on (``Background``) runs without the mark.

uvicorn tells only the newest request of a connection that the client went:
a sign-in with another request pipelined behind it on the same connection is
not told, and runs to its end as before.
"""

from __future__ import annotations

import asyncio

from .._types import ASGIApp, Message, Receive, Scope, Send
from ..accounts.slots import client_gone

__all__ = ["HangUpMiddleware"]

_DISCONNECT: Message = {"type": "http.disconnect"}


class HangUpMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        listener: asyncio.Task[None] | None = None
        answered = False

        def hung_up() -> None:
            if not (answered or gone.done()):
                gone.set_result(None)

        async def listen() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass  # nothing more of this request's body is expected after its end
            hung_up()

        async def watched_receive() -> Message:
            nonlocal listener
            if listener is not None:  # the body is read: only the disconnect is left
                await asyncio.shield(gone)
                return _DISCONNECT
            message = await receive()
            if message["type"] == "http.disconnect":
                hung_up()
            elif not message.get("more_body", False):
                listener = asyncio.ensure_future(listen())
            return message

        async def noting_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        marked = client_gone.set(gone)
        try:
            await self.app(scope, watched_receive, noting_send)
        finally:
            client_gone.reset(marked)
            if listener is not None:
                listener.cancel()
