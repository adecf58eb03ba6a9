"""How the security event log writes: in batches, with a bounded wait, and not twice a minute.

``BatchWriter``: rows added while no batch is being written go out together
(one INSERT, one batch in flight per event loop), so a burst of events costs
one transaction. Each ``add`` waits for its row's batch, or ``WAIT`` seconds
at most: the request goes on, the write finishes on its own. ``Repeats``
remembers, in bounded memory, when a noisy row was last written.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

__all__ = ["WAIT", "BatchWriter", "Repeats"]

security_log = logging.getLogger("doorman.security")

#: The longest a request waits for its event to be written (seconds); then it goes on.
WAIT = 2.0
#: Rows waiting to be written, at most: beyond, with the database stuck, new ones are dropped.
_MAX_PENDING = 10_000
#: A noisy row is written again after this long (seconds).
_REPEAT_WINDOW = 60.0


class BatchWriter:
    """Rows that go out together: one INSERT per batch, one batch in flight per event loop.

    ``add`` waits until its row's batch is written, or ``WAIT`` seconds at most.
    ``write`` logs its own failures: it never raises.
    """

    def __init__(self, write: Callable[[builtins.list[dict[str, Any]]], Awaitable[None]]) -> None:
        self._write = write
        self._pending: builtins.list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def add(self, row: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._pending, self._loop, self._task = [], loop, None
        if len(self._pending) >= _MAX_PENDING:
            security_log.error("security event log: %s not recorded: too many waiting", row["kind"])
            return
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((row, future))
        if self._task is None:
            # It starts after the requests already scheduled in this turn: they join in.
            self._task = loop.create_task(self._drain())
        try:
            await asyncio.wait_for(asyncio.shield(future), WAIT)
        except TimeoutError:
            security_log.warning(
                "security event log: still writing %s after %.0f s; not waiting", row["kind"], WAIT
            )

    async def _drain(self) -> None:
        batch: builtins.list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._write([row for row, _ in batch])
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
        finally:
            for _, future in [*batch, *self._pending]:
                if not future.done():
                    future.cancel()  # the loop is closing: nobody waits any more
            self._task = None

    async def flush(self) -> None:
        task = self._task
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            await asyncio.shield(task)


class Repeats:
    """When each noisy row was last written, by what it says (a bounded memory)."""

    def __init__(self, window: float = _REPEAT_WINDOW, size: int = 10_000) -> None:
        self.window = window
        self.size = size
        self._seen: dict[tuple[Any, ...], float] = {}

    def first(self, row: Mapping[str, Any]) -> bool:
        """Whether ``row`` is not a repeat of one written within the window."""
        key = (row["kind"], row["user_id"], row["actor"], row["address"], row["detail"])
        now = time.monotonic()
        last = self._seen.pop(key, None)
        if last is not None and now - last < self.window:
            self._seen[key] = last  # the window runs from the row that was written
            return False
        self._seen[key] = now
        if len(self._seen) > self.size:
            del self._seen[next(iter(self._seen))]  # the oldest
        return True
