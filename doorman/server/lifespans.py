"""Several apps' lifespans under one, as ``doorman protect`` needs for its two apps.

The server speaks the ASGI lifespan protocol to ``Lifespans``, which speaks it
to each app as a server would: start-up in order, shut-down in reverse. An app
that does not take part (it raises or returns on the lifespan scope without an
answer, as bare ASGI apps often do) is left out, as uvicorn would leave it out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from .._types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Lifespans"]

log = logging.getLogger("doorman.server")
#: How long an app may take to return once it has answered its shut-down.
_RETURN_SECONDS = 5.0


class Lifespans:
    """An ASGI app for the lifespan scope only: it runs the lifespan of each of ``apps``.

    ``apps`` maps a name for messages ("the protected app") to the app, in start-up order.
    """

    def __init__(self, apps: Mapping[str, ASGIApp]) -> None:
        self.apps = dict(apps)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        children = [_Child(name, app, scope) for name, app in self.apps.items()]
        try:
            await self._run(children, receive, send)
        finally:
            for child in children:
                await child.stop()

    async def _run(self, children: list[_Child], receive: Receive, send: Send) -> None:
        try:
            await receive()  # lifespan.startup; AuthMiddleware starts doorman on the way
        except Exception as error:
            log.exception("doorman could not start")
            await send({"type": "lifespan.startup.failed", "message": _describe(error)})
            return
        for position, child in enumerate(children):
            failure = await child.ask("startup")
            if failure is not None:
                for started in reversed(children[:position]):
                    await started.ask("shutdown")
                await send({"type": "lifespan.startup.failed", "message": failure})
                return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        failures = [f for c in reversed(children) if (f := await c.ask("shutdown")) is not None]
        if failures:
            await send({"type": "lifespan.shutdown.failed", "message": "; ".join(failures)})
        else:
            await send({"type": "lifespan.shutdown.complete"})


class _Child:
    """One app's lifespan, run in its own task, with the messages passed through queues."""

    def __init__(self, name: str, app: ASGIApp, scope: Scope) -> None:
        self.name = name
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.error: Exception | None = None
        self.taking_part = True
        self.shut_down = False
        self.task = asyncio.ensure_future(self._run(app, scope))

    async def _run(self, app: ASGIApp, scope: Scope) -> None:
        try:
            await app(scope, self.inbox.get, self.outbox.put)
        except Exception as error:
            self.error = error

    async def ask(self, step: str) -> str | None:
        """Send ``lifespan.<step>``: None when the app completed it, else why it failed."""
        if not self.taking_part:
            return None
        await self.inbox.put({"type": f"lifespan.{step}"})
        answer = await self._answer()
        self.shut_down = step == "shutdown"
        if answer is None:
            if step == "startup":
                self.taking_part = False
                reason = f" ({_describe(self.error)})" if self.error else ""
                log.info("%s does not handle lifespan events%s", self.name, reason)
                return None
            return f"{self.name}: {_describe(self.error)}" if self.error else None
        if answer["type"] == f"lifespan.{step}.complete":
            return None
        if answer["type"] == f"lifespan.{step}.failed":
            return f"{self.name}: {answer.get('message') or step + ' failed'}"
        return f"{self.name}: unexpected ASGI message {answer['type']!r} during {step}"

    async def _answer(self) -> Message | None:
        """The app's next message, or None when it returned (or raised) without one."""
        getter = asyncio.ensure_future(self.outbox.get())
        try:
            await asyncio.wait({getter, self.task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
                await asyncio.gather(getter, return_exceptions=True)
        if getter.done() and not getter.cancelled():
            return getter.result()
        return None if self.outbox.empty() else self.outbox.get_nowait()

    async def stop(self) -> None:
        """Let an app that shut down return; cancel one that did not get that far."""
        if self.shut_down and not self.task.done():
            await asyncio.wait({self.task}, timeout=_RETURN_SECONDS)
        if not self.task.done():
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def _describe(error: BaseException | None) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())
