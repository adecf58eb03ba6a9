"""Cross-site WebSocket hijacking in a real browser: Chromium, and ``doorman protect``.

alice signs in to an app behind ``doorman protect`` on app.example.com. A page
on evil.example.com, a sibling subdomain and so the same site, which is why
Chromium sends alice's ``SameSite=Lax`` cookie with its handshake, opens
``new WebSocket(...)`` to the app: it must not get her name. A page of the app
itself must. ``--host-resolver-rules`` sends every *.example.com to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import pytest

from .servers import Server, add_users, running, start_server
from .test_browser_signin import PageFactory, browser, open_page, sign_in_through_the_form
from .test_protect_server import ECHO_APP

pytestmark = pytest.mark.e2e

with contextlib.suppress(ImportError):  # the `test` extra installs it; `browser` skips
    from playwright.sync_api import Page, expect

__all__ = ["browser", "open_page"]  # fixtures, shared with test_browser_signin.py

#: Opens a websocket from the page; what it heard before the socket closed (at most 5 s).
OPEN_SOCKET = """
(url) => new Promise((resolve) => {
  const heard = [];
  const socket = new WebSocket(url);
  const done = (how) => resolve({heard, how});
  socket.onmessage = (event) => heard.push(event.data);
  socket.onclose = (event) => done(`closed ${event.code}`);
  setTimeout(() => done("timed out"), 5000);
})
"""


@pytest.fixture(scope="module")
def protect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("protect-ws")
    (directory / "echo_app.py").write_text(ECHO_APP)
    db = str(directory / "doorman.db")
    add_users(db, "alice")
    command = ("protect", "echo_app:app", "--app-dir", str(directory))
    server = start_server(directory, command=command, db=db, public_paths="/static/")
    with running(server):
        yield server


def heard_from(page: Page, url: str) -> dict[str, Any]:
    found: dict[str, Any] = page.evaluate(OPEN_SOCKET, url)
    return found


def test_a_page_of_another_origin_does_not_get_the_actor(
    protect: Server, open_page: PageFactory
) -> None:
    port = protect.url.rpartition(":")[2]
    app, evil = f"http://app.example.com:{port}", f"http://evil.example.com:{port}"
    page, _ = open_page()
    page.goto(f"{app}/notes")
    sign_in_through_the_form(page)
    expect(page).to_have_url(f"{app}/notes")
    socket = f"ws://app.example.com:{port}/live"

    assert heard_from(page, socket) == {"heard": ["alice"], "how": "closed 1000"}

    page.goto(f"{evil}/static/page")  # any page of that origin will do: the script is the test's
    expect(page).to_have_url(re.compile(r"^http://evil\.example\.com:"))
    refused = heard_from(page, socket)
    assert refused["heard"] == [], "a page of another origin heard from the app as alice"
    assert refused["how"] == "closed 1006"  # the handshake was refused (403)
    assert "refused a websocket to '/live' from origin 'http://evil.example.com:" in protect.log()
