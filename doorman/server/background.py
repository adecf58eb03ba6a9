"""Work a request starts and does not wait for: sending mail, so that its timing tells nothing.

A reset asked for an address that has an account would answer later than one
for an address that has none, if the answer waited for the mail server. So
the view hands the lookup and the sending to ``Background.spawn`` and answers
at once, the same words either way. A failure is logged (``MailNotSent`` by the
mailer itself, without the link); the person can ask again.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from typing import Any

from ..accounts.slots import client_gone
from ..exceptions import DoormanError, MailNotSent

__all__ = ["Background"]

log = logging.getLogger("doorman.mail")
_DRAIN_S = 10.0  # SMTPMailer's own bound on one message


class Background:
    """``spawn(coroutine)``; ``drain()`` on shutdown waits a little for what is under way."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, object]) -> None:
        # Not the request's to stop: its client hanging up (``client_gone``) must not
        # drop the mail of the account it made.
        context = contextvars.copy_context()
        context.run(client_gone.set, None)
        task = asyncio.get_running_loop().create_task(self._run(work), context=context)
        self._tasks.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _run(work: Coroutine[Any, Any, object]) -> None:
        try:
            await work
        except MailNotSent:
            pass  # the mailer logged it, without the link
        except DoormanError as error:  # no trusted origin for the link, say
            log.warning("a message was not sent: %s", error)
        except Exception:
            log.exception("sending a message in the background failed")

    async def drain(self) -> None:
        """Wait for the work under way, as long as one send may take at most."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=_DRAIN_S)
