"""Hostile request bodies on every route that reads a form: no 500, nothing read without end.

Every POST route of the sign-in server reads its fields through one helper
(``views/common.py``): a form, or a JSON object for scripts. These tests send
it what no form sends: JSON nested deeper than Python's recursion limit, and
bodies far larger than any form of ours (with and without a Content-Length),
anonymously and signed in as an admin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .test_server_admin import POST_ROUTES, Server, signed_in, token_of
from .test_server_admin import server as server  # the admin pages' fixture, re-exported

pytestmark = pytest.mark.anyio

#: Every route that reads fields, as the admin pages' tests name them.
FORM_ROUTES = [
    "/-/login",
    "/-/logout",
    "/-/setup",
    "/-/account/email",
    "/-/account/password",
    "/-/account/tokens",
    "/-/account/sessions/SIGNIN/revoke",
    "/-/account/tokens/TOKEN/revoke",
    *POST_ROUTES,
    "/-/admin/users/bob/details",
]
DEEP_JSON = b'{"username":' + b"[" * 5000 + b"]" * 5000 + b"}"
#: A chunk of a body far larger than any form: 64 KiB, sent up to 256 times (16 MiB).
CHUNK, CHUNKS = b"a" * 65536, 256


@pytest.mark.parametrize("path", FORM_ROUTES)
async def test_json_nested_past_the_recursion_limit_is_refused(server: Server, path: str) -> None:
    async with signed_in(server) as browser:
        headers = {"content-type": "application/json", "x-csrftoken": await token_of(browser)}
        answer = await browser.post(path, content=DEEP_JSON, headers=headers)
        anonymous = await browser.post(
            "/-/login", content=DEEP_JSON, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 403, answer.text  # unreadable fields: the form is refused
    assert anonymous.status_code == 403


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
async def test_a_body_larger_than_any_form_is_not_read_to_its_end(
    server: Server, content_type: str
) -> None:
    """Streamed without a Content-Length, the body stops being read past the limit.

    Fields of 896 KiB each: under the size of one part that Starlette's form parser
    refuses, so only a limit on the whole body stops it.
    """
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < CHUNKS * len(CHUNK):
            for piece in (b"name=", *[CHUNK] * 14, b"&"):
                sent += len(piece)
                yield piece

    async with signed_in(server) as browser:
        headers = {"content-type": content_type, "x-csrftoken": await token_of(browser)}
        answer = await browser.post("/-/account/tokens", content=endless(), headers=headers)
    assert answer.status_code == 403
    assert sent < CHUNKS * len(CHUNK) // 4, f"read {sent // 1024} KiB"


async def test_a_declared_length_larger_than_any_form_is_refused_unread(server: Server) -> None:
    async with signed_in(server) as browser:
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "x-csrftoken": await token_of(browser),
        }
        body = b"name=" + CHUNK * 8  # 512 KiB, with its Content-Length
        answer = await browser.post("/-/account/tokens", content=body, headers=headers)
        ordinary = await browser.post(
            "/-/account/tokens", data={"name": "ci", "expires": "30"}, headers=headers
        )
    assert answer.status_code == 403
    assert ordinary.status_code == 303, "a form of ordinary size still goes through"
