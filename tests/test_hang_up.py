"""``HangUpMiddleware`` and what a request hands on: what its hang-up stops, and what not.

The hang-up itself, against a real uvicorn, is in test_hang_up_server.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from doorman.accounts.slots import client_gone
from doorman.server.background import Background
from doorman.server.hang_up import HangUpMiddleware

from .helpers import client

pytestmark = pytest.mark.anyio


def app_noting_the_mark(seen: dict[str, Any]) -> Any:
    """An app that reads its body, answers, and then looks at its ``client_gone`` mark."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body", False):
            pass
        seen["mark"] = client_gone.get()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        await asyncio.sleep(0.05)  # the server says "disconnect" once the answer has gone
        seen["gone after the answer"] = seen["mark"] is not None and seen["mark"].done()

    return HangUpMiddleware(app)


async def test_a_disconnect_after_the_answer_is_no_hang_up() -> None:
    """Servers report a disconnect once the response has ended (httpx's transport and
    uvicorn both do): the mark said the client hung up, and work the request started
    and left running, such as a new account's mail, was dropped as abandoned."""
    seen: dict[str, Any] = {}
    async with client(app_noting_the_mark(seen)) as http:
        assert (await http.post("/", content=b"x" * 100)).text == "done"
    await asyncio.sleep(0.1)
    assert seen["mark"] is not None
    assert seen["gone after the answer"] is False


async def test_only_a_post_is_watched() -> None:
    seen: dict[str, Any] = {}
    async with client(app_noting_the_mark(seen)) as http:
        assert (await http.put("/", content=b"x")).text == "done"
    assert seen["mark"] is None


async def test_work_handed_to_the_background_is_not_the_requests_to_stop() -> None:
    """A registration whose client hung up made the account, and its verification
    mail's throttle attempt then read the request's mark and dropped the mail."""
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    gone.set_result(None)
    marks: list[object] = []

    async def work() -> None:
        marks.append(client_gone.get())

    background = Background()
    marked = client_gone.set(gone)
    try:
        background.spawn(work())
    finally:
        client_gone.reset(marked)
    await background.drain()
    assert marks == [None]
