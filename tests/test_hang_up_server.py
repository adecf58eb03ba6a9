"""A sign-in whose client hangs up while it waits for a slot, against a real ``doorman serve``.

uvicorn does not cancel a request when its client goes away: before
``HangUpMiddleware``, the abandoned sign-in still got its turn and its password
check, counted against the account, for nobody. Here the account's limit is one
check at a time (``throttle_per_account=1``) and a test-only plugin makes every
password check take ``CHECK_S`` seconds, so a second sign-in must wait in line.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .servers import PASSWORD, Server, running, start_server
from .test_throttle_server import FAST_HASHER, Browser, add_users, failures_logged

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

CHECK_S = 1.5
SLOW_HASHER_PLUGIN = f"""\
import asyncio

from doorman import PasswordHasher, hookimpl


class SlowHasher(PasswordHasher):
    async def verify(self, password, hashed):
        await asyncio.sleep({CHECK_S})
        return await super().verify(password, hashed)


@hookimpl
def startup(doorman):
    doorman.hasher = doorman.users.hasher = SlowHasher(**{FAST_HASHER!r})
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory: Path = tmp_path_factory.mktemp("hang-up")
    plugins = directory / "plugins"
    plugins.mkdir()
    (plugins / "slow_hasher.py").write_text(SLOW_HASHER_PLUGIN)
    db = str(directory / "doorman.db")
    add_users(db)
    started = start_server(
        directory / "server",
        db=db,
        plugins_dir=str(plugins),
        throttle_per_account=1,
        throttle_window=900,
        forwarded_allow_ips="127.0.0.1",
    )
    with running(started):
        yield started


async def test_a_sign_in_abandoned_while_it_waits_is_never_checked(server: Server) -> None:
    async with (
        Browser(server.url, "10.9.0.1") as first,
        Browser(server.url, "10.9.0.2") as leaver,
        Browser(server.url, "10.9.0.3") as later,
    ):
        token = await leaver.form_token("/-/login")
        signing_in = asyncio.create_task(first.sign_in("mallory"))
        await asyncio.sleep(CHECK_S / 3)  # its check holds the account's one slot
        with pytest.raises(httpx.ReadTimeout):  # httpx closes the connection: a hang-up
            await leaver.http.post(
                "/-/login",
                data={"username": "mallory", "password": "a wrong one", "csrftoken": token},
                timeout=CHECK_S / 3,
            )
        assert await signing_in == 302
        # Had the wrong password been checked after all, the account's one failure
        # would refuse this right one (429).
        assert await later.sign_in("mallory", PASSWORD) == 302
    assert failures_logged(server, "mallory", r"\S+") == 0
    assert re.search(r'10\.9\.0\.2 "POST /-/login HTTP/1\.1" 499 ', server.log())
