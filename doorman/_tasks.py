"""Work that must end once begun, whether or not its caller still waits for it.

A request's task is cancelled when its client goes away (a timeout, a closed
tab, a server that cancels on disconnect). Most work may stop there; what
records a slot taken or given back (the throttle's counts) may not: stopped
half-way, it leaves a slot held until its lease lapses, and right passwords
wait for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["to_the_end"]

T = TypeVar("T")

log = logging.getLogger("doorman")

#: Tasks left running by a cancelled caller: held here until they end (the loop keeps
#: only weak references to tasks).
_running: set[asyncio.Task[Any]] = set()


async def to_the_end(
    work: Coroutine[Any, Any, T],
    *,
    abandoned: Callable[[T], Coroutine[Any, Any, object] | None] | None = None,
) -> T:
    """Await ``work``; if this task is cancelled meanwhile, ``work`` still runs to its end
    (in a task of its own), and then ``abandoned(result)`` runs, if given, to undo what
    nobody is left to use (a slot taken for a client that went away)."""
    task = _keep(asyncio.ensure_future(work))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if abandoned is not None:
            task.add_done_callback(lambda done: _follow(done, abandoned))
        raise


def _follow(done: asyncio.Future[T], abandoned: Callable[[T], Any]) -> None:
    if done.cancelled() or done.exception() is not None:
        return
    follow_up = abandoned(done.result())
    if follow_up is not None:
        _keep(asyncio.ensure_future(follow_up))


def _keep(task: asyncio.Task[T]) -> asyncio.Task[T]:
    _running.add(task)
    task.add_done_callback(_ended)
    return task


def _ended(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        # Its caller may have gone: the failure is reported here, once, not lost.
        log.warning("work left by a cancelled request failed: %r", task.exception())
