"""The pages a person reads, over HTTP in process: errors, the icon, links, lists, edits.

Browser-level checks (copying, narrow screens, the layout) are in test_browser_pages.py.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from doorman import PasswordHasher
from doorman.config import assemble, load_settings
from doorman.core import Doorman
from doorman.server.app import create_app
from doorman.server.devices import UNKNOWN_DEVICE, device_name

from .conftest import SECRET
from .helpers import client

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
HTML = {"accept": "text/html,application/xhtml+xml"}
JSON = {"accept": "application/json"}
CHROME_ON_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
SAFARI_ON_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


@dataclass
class Server:
    app: Any
    doorman: Doorman


@contextlib.asynccontextmanager
async def running(tmp_path: Path, protected: Any = None, **overrides: Any) -> AsyncIterator[Any]:
    options = {"db": str(tmp_path / "doorman.db"), "secret": SECRET, **overrides}
    settings = load_settings(environ={}, overrides=options)
    doorman, store = assemble(settings, [SECRET])
    doorman.hasher = doorman.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024)
    await doorman.startup()
    try:
        app = create_app(settings, doorman=doorman, store=store, protected=protected)
        yield Server(app, doorman)
    finally:
        await store.close()
        await doorman.close()
        await doorman.engine.dispose()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running(tmp_path) as found:
        await found.doorman.create_user("alice", PASSWORD, email="alice@example.com")
        await found.doorman.create_user("bob", PASSWORD)
        await found.doorman.create_user("root", PASSWORD, admin=True)
        yield found


async def token_of(browser: httpx.AsyncClient) -> str:
    token = (await browser.get("/-/whoami?csrf=1")).json()["csrftoken"]
    assert isinstance(token, str)
    return token


@contextlib.asynccontextmanager
async def signed_in(
    server: Server, username: str = "alice", user_agent: str = CHROME_ON_LINUX
) -> AsyncIterator[httpx.AsyncClient]:
    async with client(server.app, headers={"user-agent": user_agent}) as browser:
        data = {"username": username, "password": PASSWORD, "csrftoken": await token_of(browser)}
        assert (await browser.post("/-/login", data=data)).status_code == 302
        yield browser


async def post(browser: httpx.AsyncClient, path: str, data: dict[str, str]) -> httpx.Response:
    return await browser.post(path, data={**data, "csrftoken": await token_of(browser)})


def visible_text(page: str) -> str:
    """The page without its tags (and so without attribute values)."""
    return re.sub(r"<[^>]*>", " ", page)


# -- sessions in words -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "name"),
    [
        (CHROME_ON_LINUX, "Chrome on Linux"),
        (SAFARI_ON_IPHONE, "Mobile Safari on iOS"),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "Firefox on Linux",
        ),
        ("curl/8.5.0", "curl"),
        ("", UNKNOWN_DEVICE),
        (None, UNKNOWN_DEVICE),
        ("<script>alert(1)</script>", UNKNOWN_DEVICE),
        ("\x00" * 300, UNKNOWN_DEVICE),
    ],
)
def test_device_names(user_agent: str | None, name: str) -> None:
    assert device_name(user_agent) == name
