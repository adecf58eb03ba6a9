"""The second step of sign-in over HTTP, in process: every way in stops at it, and it holds.

A person with TOTP on is not signed in after their password (``/-/whoami`` says
null, ``/-/auth`` 401), the session key is not cycled until the code, wrong
codes are counted per account, the pending step ends after five minutes or
when the account changes; password-reset and email links stop there too; the
policy sends a covered admin to enrol before anything else.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doorman.accounts.recovery_codes import CODE_COUNT
from doorman.accounts.totp import STEP
from doorman.auth import two_step

from .helpers import COOKIE
from .mail_server import MailServer
from .mail_server import relay as relay
from .test_password_reset import NEW_PASSWORD, Site, csrf_of, emptied, site, whoami

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
STEP_URL = "/-/login/two-factor"
HTML = {"accept": "text/html"}


async def turn_on_totp(found: Site, username: str = "alice") -> pyotp.TOTP:
    user = await found.doorman.users.require(username)
    secret = await found.doorman.totp.start(user)
    totp = pyotp.TOTP(secret)
    assert await found.doorman.totp.confirm(user, totp.now())
    return totp


def next_code(totp: pyotp.TOTP, steps: int = 1) -> str:
    """A code not yet taken: the confirming code took this step's."""
    return str(totp.at(time.time() + steps * STEP))


async def password_step(browser: httpx.AsyncClient, username: str = "alice", **extra: str) -> Any:
    form = {"username": username, "password": PASSWORD, "csrftoken": await csrf_of(browser)}
    return await browser.post("/-/login", data={**form, **extra})


async def code_step(browser: httpx.AsyncClient, code: str) -> httpx.Response:
    return await browser.post(STEP_URL, data={"code": code, "csrftoken": await csrf_of(browser)})


@pytest.fixture(scope="module")
async def shared_site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    async with site(tmp_path_factory.mktemp("shared"), None, create=False) as made:
        yield made


@pytest.fixture
async def found(shared_site: Site) -> Site:
    """The module's sign-in server, emptied, with alice and bob."""
    return await emptied(shared_site)


async def test_a_password_alone_signs_nobody_in_and_the_code_does(found: Site) -> None:
    totp = await turn_on_totp(found)
    async with found.browser() as browser:
        first = await password_step(browser, next="/-/account?x=1")
        assert first.status_code == 302 and first.headers["location"] == STEP_URL
        key = browser.cookies[COOKIE]
        assert await whoami(browser) is None
        assert (await browser.get("/-/auth")).status_code == 401
        assert (await browser.get("/-/account", headers=HTML)).status_code in (302, 303)
        page = await browser.get(STEP_URL, headers=HTML)
        assert page.status_code == 200 and 'name="code"' in page.text and "alice" in page.text
        assert browser.cookies[COOKIE] == key, "nothing cycled at the first step"
        done = await code_step(browser, next_code(totp))
        assert done.status_code == 303 and done.headers["location"] == "/-/account?x=1"
        assert browser.cookies[COOKIE] != key, "the key cycles when the sign-in completes"
        assert await whoami(browser) == "alice"
        assert (await browser.get("/-/auth")).status_code == 200
        assert (await browser.get(STEP_URL)).status_code == 303  # nothing pending any more


async def test_a_wrong_code_is_401_with_the_form_and_wrong_codes_are_throttled(
    tmp_path: Path,
) -> None:
    async with site(tmp_path, None, throttle_per_account=3) as found:
        totp = await turn_on_totp(found)
        async with found.browser() as browser:
            await password_step(browser)
            for _ in range(3):
                wrong = await code_step(browser, "000000")
                assert wrong.status_code == 401 and 'name="code"' in wrong.text
                assert "not right" in wrong.text
            throttled = await code_step(browser, next_code(totp))
            assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
            assert await whoami(browser) is None
        kinds = [e.kind for e in await found.doorman.events.list()]
        assert kinds.count("two-factor-failed") == 3


async def test_a_recovery_code_signs_in_once(found: Site) -> None:
    await turn_on_totp(found)
    alice = await found.doorman.users.require("alice")
    codes = await found.doorman.recovery_codes.regenerate(alice)
    async with found.browser() as browser:
        await password_step(browser)
        assert (await code_step(browser, codes[0].upper())).status_code == 303
        assert await whoami(browser) == "alice"
    async with found.browser() as browser:
        await password_step(browser)
        assert (await code_step(browser, codes[0])).status_code == 401
    assert await found.doorman.recovery_codes.remaining(alice) == CODE_COUNT - 1


async def test_the_pending_step_expires(found: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    totp = await turn_on_totp(found)
    async with found.browser() as browser:
        await password_step(browser)
        later = time.time() + two_step.PENDING_FOR + 1
        monkeypatch.setattr(two_step.time, "time", lambda: later)
        gone = await code_step(browser, next_code(totp))
        assert gone.status_code == 303 and gone.headers["location"] == "/-/login"
        monkeypatch.undo()
        assert await whoami(browser) is None


@pytest.mark.parametrize("change", ["disable", "password", "end_sessions"])
async def test_an_account_changed_between_the_steps_ends_the_step(found: Site, change: str) -> None:
    totp = await turn_on_totp(found)
    async with found.browser() as browser:
        await password_step(browser)
        alice = await found.doorman.users.require("alice")
        if change == "disable":
            await found.doorman.users.set_active(alice, False)
        elif change == "password":
            await found.doorman.set_password(alice, NEW_PASSWORD)
        else:
            await found.doorman.end_sessions(alice)
        refused = await code_step(browser, next_code(totp))
        assert refused.status_code == 303 and refused.headers["location"] == "/-/login"
        assert await whoami(browser) is None


async def test_cancel_forgets_the_step(found: Site) -> None:
    totp = await turn_on_totp(found)
    async with found.browser() as browser:
        await password_step(browser)
        form = {"cancel": "1", "csrftoken": await csrf_of(browser)}
        assert (await browser.post(STEP_URL, data=form)).headers["location"] == "/-/login"
        assert (await code_step(browser, next_code(totp))).headers["location"] == "/-/login"
        assert await whoami(browser) is None


async def test_the_step_needs_its_csrf_token(found: Site) -> None:
    totp = await turn_on_totp(found)
    async with found.browser() as browser:
        await password_step(browser)
        assert (await browser.post(STEP_URL, data={"code": next_code(totp)})).status_code == 403
        assert await whoami(browser) is None


async def test_json_clients_take_both_steps(found: Site) -> None:
    totp = await turn_on_totp(found)
    async with found.browser() as browser:
        token = await csrf_of(browser)
        headers = {"x-csrftoken": token}
        first = await browser.post(
            "/-/login", json={"username": "alice", "password": PASSWORD}, headers=headers
        )
        assert first.status_code == 200 and first.json() == {"two_factor": STEP_URL}
        assert await whoami(browser) is None
        shown = await browser.get(STEP_URL, headers={"accept": "application/json"})
        assert shown.json() == {"two_factor": {"username": "alice", "enrol": False}}
        headers = {"x-csrftoken": await csrf_of(browser)}
        wrong = await browser.post(STEP_URL, json={"code": "000000"}, headers=headers)
        assert wrong.status_code == 401 and "error" in wrong.json()
        done = await browser.post(STEP_URL, json={"code": next_code(totp)}, headers=headers)
        assert done.status_code == 200 and done.json()["actor"]["username"] == "alice"
        assert await whoami(browser) == "alice"


@pytest.mark.parametrize(
    "body",
    [
        {"code": 123456},
        {"code": None},
        {"code": ["1", "2"]},
        {"code": {"a": 1}},
        {"code": "9" * 100_000},
        {"code": "\u202e\u0000\ud7ff"},
        {},
        [],
        "code",
    ],
)
async def test_odd_input_gets_a_4xx(found: Site, body: Any) -> None:
    await turn_on_totp(found)
    async with found.browser() as browser:
        await password_step(browser)
        headers = {"x-csrftoken": await csrf_of(browser), "content-type": "application/json"}
        answer = await browser.post(STEP_URL, content=json.dumps(body), headers=headers)
        assert 400 <= answer.status_code < 500
        form = await browser.post(
            STEP_URL, data={"code": "\u00e9" * 5000, "csrftoken": await csrf_of(browser)}
        )
        assert form.status_code == 401
        assert (await browser.post(STEP_URL, content=b"\xff\xfe", headers=HTML)).status_code == 403
        assert await whoami(browser) is None


async def test_without_a_pending_step_the_page_sends_to_login(found: Site) -> None:
    async with found.browser() as browser:
        assert (await browser.get(STEP_URL)).headers["location"] == "/-/login"
        answer = await browser.get(STEP_URL, headers={"accept": "application/json"})
        assert answer.status_code == 401


async def test_without_a_factor_a_password_signs_in_at_once(found: Site) -> None:
    async with found.browser() as browser:
        first = await password_step(browser)
        assert first.status_code == 302 and first.headers["location"] == "/-/account"
        assert await whoami(browser) == "alice"


async def test_a_password_reset_link_stops_at_the_step(found: Site) -> None:
    totp = await turn_on_totp(found)
    alice = await found.doorman.users.require("alice")
    token = found.doorman.links.make("password-reset", alice)
    async with found.browser() as browser:
        moved = await browser.get(f"/-/password-reset/{token}")
        assert moved.status_code == 303
        form = {"password": NEW_PASSWORD, "password2": NEW_PASSWORD}
        chosen = await browser.post(
            "/-/password-reset/new", data={**form, "csrftoken": await csrf_of(browser)}
        )
        assert chosen.status_code == 303 and chosen.headers["location"] == STEP_URL
        assert await whoami(browser) is None
        done = await code_step(browser, next_code(totp))
        assert done.headers["location"] == "/-/account?done=password-reset"
        assert await whoami(browser) == "alice"


async def test_an_email_sign_in_link_stops_at_the_step(tmp_path: Path, relay: MailServer) -> None:
    async with site(tmp_path, relay, email_sign_in=True) as found:
        totp = await turn_on_totp(found)
        alice = await found.doorman.users.require("alice")
        token = found.doorman.links.make("sign-in", alice)
        async with found.browser() as browser:
            assert (await browser.get(f"/-/sign-in-link/{token}")).status_code == 303
            form = {"csrftoken": await csrf_of(browser)}
            answer = await browser.post("/-/sign-in-link/new", data=form)
            assert answer.status_code == 303 and answer.headers["location"] == STEP_URL
            assert await whoami(browser) is None
            assert (await code_step(browser, next_code(totp))).status_code == 303
            assert await whoami(browser) == "alice"


# -- the policy ----------------------------------------------------------------------------


async def test_policy_admins_sends_an_admin_to_enrol_before_anything_else(
    tmp_path: Path,
) -> None:
    async with site(tmp_path, None, require_two_factor="admins") as found:
        await found.doorman.create_user("root", PASSWORD, admin=True)
        async with found.browser() as browser:  # a member without a factor: not covered
            assert (await password_step(browser, "alice")).headers["location"] == "/-/account"
        async with found.browser() as browser:
            first = await password_step(browser, "root")
            assert first.headers["location"] == STEP_URL
            for path in ("/-/account", "/-/admin/users", "/-/account/two-factor"):
                answer = await browser.get(path, headers=HTML)
                assert answer.status_code in (302, 303) and "/-/login" in answer.headers["location"]
            assert (await browser.get("/-/auth")).status_code == 401
            assert await whoami(browser) is None
            page = await browser.get(STEP_URL, headers=HTML)
            assert page.status_code == 200 and "otpauth://totp/" in page.text
            assert "<svg" in page.text and 'name="code"' in page.text
            uri = page.text.split('id="totp-uri">', 1)[1].split("<", 1)[0]
            totp = pyotp.parse_uri(uri.replace("&amp;", "&"))
            wrong = await code_step(browser, "000000")
            assert wrong.status_code == 401 and await whoami(browser) is None
            done = await code_step(browser, totp.now())
            assert done.status_code == 200 and done.text.count("-") >= 3 * CODE_COUNT
            assert await whoami(browser) == "root"
            assert (await browser.get("/-/admin/users", headers=HTML)).status_code == 200
        root = await found.doorman.users.require("root")
        assert (await found.doorman.second_factors(root)).totp
        assert await found.doorman.recovery_codes.remaining(root) == CODE_COUNT
        async with found.browser() as browser:  # next time: a code, not enrolment
            await password_step(browser, "root")
            shown = await browser.get(STEP_URL, headers=HTML)
            assert "otpauth://" not in shown.text and 'name="code"' in shown.text


# -- enrolment on the account page ---------------------------------------------------------

ENROL_URL = "/-/account/two-factor"


@contextlib.asynccontextmanager
async def signed_in_browser(found: Site) -> AsyncIterator[httpx.AsyncClient]:
    async with found.browser() as browser:
        assert (await password_step(browser)).headers["location"] == "/-/account"
        yield browser


async def post_action(browser: httpx.AsyncClient, action: str, **extra: str) -> httpx.Response:
    form = {"action": action, "csrftoken": await csrf_of(browser), **extra}
    return await browser.post(ENROL_URL, data=form, headers=HTML)


def uri_on(page: str) -> str:
    return page.split('id="totp-uri">', 1)[1].split("<", 1)[0].replace("&amp;", "&")


async def test_enrol_from_the_account_page_then_sign_in_with_a_code(found: Site) -> None:
    async with signed_in_browser(found) as browser:
        account = await browser.get("/-/account", headers=HTML)
        assert f'href="{ENROL_URL}"' in account.text
        status = await browser.get(ENROL_URL, headers=HTML)
        assert status.status_code == 200 and "Off." in status.text
        started = await post_action(browser, "start")
        assert started.status_code == 200 and "<svg" in started.text
        uri = uri_on(started.text)
        assert uri.startswith("otpauth://totp/doorman:alice?") and "issuer=doorman" in uri
        totp = pyotp.parse_uri(uri)
        alice = await found.doorman.users.require("alice")
        assert not (await found.doorman.second_factors(alice)).any  # not before a right code
        wrong = await post_action(browser, "confirm", code="000000")
        assert wrong.status_code == 400 and uri_on(wrong.text) == uri
        done = await post_action(browser, "confirm", code=totp.now())
        assert done.status_code == 200 and 'id="recovery-codes"' in done.text
        codes = done.text.split('id="recovery-codes">', 1)[1].split("</pre>", 1)[0].split()
        assert len(codes) == CODE_COUNT
        assert 'data-replace-url="/-/account/two-factor"' in done.text
        again = await browser.get(ENROL_URL, headers=HTML)
        assert codes[0] not in again.text, "shown once"
        assert "otpauth://" not in again.text
    summary = await found.doorman.second_factors(alice)
    assert summary.totp and summary.recovery_codes == CODE_COUNT
    async with found.browser() as browser:
        assert (await password_step(browser)).headers["location"] == STEP_URL
        assert (await code_step(browser, codes[3])).status_code == 303
    kinds = [e.kind for e in await found.doorman.events.list()]
    assert {"two-factor-enabled", "recovery-codes-created", "recovery-code-used"} <= set(kinds)


async def test_regenerate_and_turn_off(found: Site) -> None:
    totp = await turn_on_totp(found)
    alice = await found.doorman.users.require("alice")
    old = await found.doorman.recovery_codes.regenerate(alice)
    async with found.browser() as browser:
        await password_step(browser)
        await code_step(browser, next_code(totp))
        assert (await post_action(browser, "start")).status_code == 409  # on already
        fresh = await post_action(browser, "regenerate")
        assert fresh.status_code == 200 and 'id="recovery-codes"' in fresh.text
        assert not await found.doorman.recovery_codes.use(alice, old[0])
        off = await post_action(browser, "disable")
        assert off.status_code == 303 and off.headers["location"] == ENROL_URL + "?done=off"
    summary = await found.doorman.second_factors(alice)
    assert not summary.any and summary.recovery_codes == 0
    kinds = [e.kind for e in await found.doorman.events.list()]
    assert "two-factor-disabled" in kinds
    async with found.browser() as browser:
        assert (await password_step(browser)).headers["location"] == "/-/account"


async def test_enrolment_needs_csrf_a_person_and_a_known_action(found: Site) -> None:
    async with signed_in_browser(found) as browser:
        bare = await browser.post(ENROL_URL, data={"action": "start"}, headers=HTML)
        assert bare.status_code == 403
        assert (await post_action(browser, "nonsense")).status_code == 400
        assert (await post_action(browser, "confirm", code="123456")).status_code == 409
        assert (await post_action(browser, "regenerate")).status_code == 409
    async with found.browser() as anonymous:
        assert (await anonymous.get(ENROL_URL, headers=HTML)).status_code in (302, 303)
    alice = await found.doorman.users.require("alice")
    _, token = await found.doorman.tokens.create(alice, name="ci")
    async with found.browser() as api:
        bearer = {"authorization": f"Bearer {token}"}
        answer = await api.post(ENROL_URL, json={"action": "start"}, headers=bearer)
        assert answer.status_code == 403
    assert await found.doorman.totp.state(alice) is None


async def test_enrolment_as_json(found: Site) -> None:
    async with signed_in_browser(found) as browser:
        headers = {"x-csrftoken": await csrf_of(browser)}
        status = await browser.get(ENROL_URL, headers={"accept": "application/json"})
        assert status.json() == {"totp": False, "passkeys": 0, "recovery_codes_left": 0}
        started = await browser.post(ENROL_URL, json={"action": "start"}, headers=headers)
        totp = pyotp.parse_uri(started.json()["otpauth_uri"])
        done = await browser.post(ENROL_URL, json={"code": totp.now()}, headers=headers)
        assert done.status_code == 200 and len(done.json()["recovery_codes"]) == CODE_COUNT
        assert done.json()["totp"] is True
        odd = await browser.post(ENROL_URL, json={"action": ["x"], "code": 1}, headers=headers)
        assert odd.status_code == 400


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.one_of(
        st.dictionaries(st.sampled_from(["code", "cancel", "action", "csrftoken"]), st.text()),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
            max_leaves=5,
        ),
    ),
    as_json=st.booleans(),
)
async def test_no_body_sent_to_a_pending_step_gives_a_500_or_a_session(
    found: Site, body: Any, as_json: bool
) -> None:
    if not (await found.doorman.second_factors(await found.doorman.users.require("alice"))).any:
        await turn_on_totp(found)
    async with found.browser() as browser:
        await password_step(browser)
        headers = {"x-csrftoken": await csrf_of(browser)}
        if as_json:
            headers["content-type"] = "application/json"
            answer = await browser.post(STEP_URL, content=json.dumps(body), headers=headers)
        elif isinstance(body, dict):
            answer = await browser.post(STEP_URL, data=body, headers=headers)
        else:
            answer = await browser.post(STEP_URL, content=str(body), headers=headers)
        assert answer.status_code < 500
        assert await whoami(browser) is None


async def test_policy_everyone_holds_up_a_new_account_until_it_enrols_by_json(
    tmp_path: Path,
) -> None:
    options = {"require_two_factor": "everyone", "registration": "open"}
    async with site(tmp_path, None, **options) as found, found.browser() as browser:
        headers = {"x-csrftoken": await csrf_of(browser)}
        form = {"username": "carol", "password": PASSWORD, "password2": PASSWORD}
        made = await browser.post("/-/register", json=form, headers=headers)
        assert made.status_code == 200 and made.json() == {"two_factor": STEP_URL}
        assert await whoami(browser) is None
        shown = await browser.get(STEP_URL, headers={"accept": "application/json"})
        step = shown.json()["two_factor"]
        assert step["enrol"] is True and step["otpauth_uri"].startswith("otpauth://totp/")
        totp = pyotp.parse_uri(step["otpauth_uri"])
        headers = {"x-csrftoken": await csrf_of(browser)}
        wrong = await browser.post(STEP_URL, json={"code": "000000"}, headers=headers)
        assert wrong.status_code == 401 and await whoami(browser) is None
        done = await browser.post(STEP_URL, json={"code": totp.now()}, headers=headers)
        assert done.status_code == 200 and len(done.json()["recovery_codes"]) == CODE_COUNT
        assert done.json()["actor"]["username"] == "carol"
        assert await whoami(browser) == "carol"
