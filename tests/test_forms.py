"""Forms report every problem at once, each beside its field; hints list every password rule.

Pages are parsed: a field in error says ``aria-invalid="true"`` and points with
``aria-describedby`` at its message, which sits right before it; the first
field in error has the focus, so the page opens on it. Errors about the whole
form stay at the top (``role="alert"``). JSON answers keep ``errors`` and add
``field_errors``.
"""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser
from pathlib import Path

import pytest

from doorman.server import setup

from .test_server import HTML, PASSWORD, browse, csrf_token, running
from .test_server_admin import Server, json_post, post, signed_in
from .test_server_admin import server as server  # the admin pages' fixture, re-exported

pytestmark = pytest.mark.anyio

RULES = (
    "Between 10 and 1,024 characters; not all digits; not one of the 20,000 most common "
    "passwords; not too similar to the username or email address."
)


@dataclasses.dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    position: int
    text: str = ""


class Page(HTMLParser):
    """A page's elements with an id, in document order, with their text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: dict[str, Element] = {}
        self.autofocused: list[str] = []
        self.alerts: list[str] = []
        self._count = 0
        self._open: list[tuple[str, Element | None]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self._count += 1
        element = Element(tag, attributes, self._count)
        if "id" in attributes:
            self.elements[attributes["id"]] = element
            if "autofocus" in attributes:
                self.autofocused.append(attributes["id"])
        if attributes.get("role") == "alert":
            self.alerts.append(attributes.get("id", tag))
        if tag not in ("input", "meta", "link", "br"):
            self._open.append((tag, element))

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        for _, element in self._open:
            if element is not None:
                element.text += data

    def error_of(self, field_id: str) -> str:
        """The message beside a field, checking the markup that ties them together."""
        field = self.elements[field_id]
        assert field.attrs.get("aria-invalid") == "true", field_id
        assert f"{field_id}-error" in field.attrs.get("aria-describedby", "").split()
        message = self.elements[f"{field_id}-error"]
        assert message.position == field.position - 1, "the message sits right before its field"
        return message.text

    def is_valid(self, field_id: str) -> bool:
        field = self.elements[field_id]
        described = field.attrs.get("aria-describedby", "")
        return "aria-invalid" not in field.attrs and f"{field_id}-error" not in described


# -- registration and set-up ---------------------------------------------------------


async def test_registration_reports_every_problem_beside_its_field(tmp_path: Path) -> None:
    form = {"username": "bad name", "email": "nope", "password": "12345", "password2": "54321"}
    async with running(tmp_path, allow_registration=True) as found, browse(found) as browser:
        token = await csrf_token(browser)
        answer = await browser.post("/-/register", data={**form, "csrftoken": token}, headers=HTML)
        api = await browser.post("/-/register", json=form, headers={"x-csrftoken": token})
    assert answer.status_code == 400
    page = Page(answer.text)
    assert "A username is 1 to 150" in page.error_of("username")
    assert page.error_of("email") == "'nope' is not an email address."
    password = page.error_of("password")
    assert "shorter than 10 characters" in password and "entirely numeric" in password
    assert page.error_of("password2") == "The two passwords differ."
    assert page.autofocused == ["username"]
    assert page.alerts == [], "nothing about the form as a whole"
    assert "password-hint" in page.elements["password"].attrs["aria-describedby"].split()

    assert api.status_code == 400
    body = api.json()
    assert list(body["field_errors"]) == ["username", "email", "password", "password2"]
    assert body["errors"] == [m for found in body["field_errors"].values() for m in found]
    assert body["field_errors"]["password2"] == ["The two passwords differ."]


async def test_the_focus_goes_to_the_first_field_in_error(tmp_path: Path) -> None:
    form = {"username": "erin", "password": PASSWORD, "password2": "not the same at all"}
    async with running(tmp_path, allow_registration=True) as found, browse(found) as browser:
        await found.doorman.create_user("taken", PASSWORD)
        token = await csrf_token(browser)
        answer = await browser.post("/-/register", data={**form, "csrftoken": token}, headers=HTML)
        page = Page(answer.text)
        assert page.autofocused == ["password2"]
        assert all(page.is_valid(name) for name in ("username", "email", "password"))
        assert page.elements["username"].attrs["value"] == "erin"
        taken = {**form, "username": "Taken", "csrftoken": token}
        page = Page((await browser.post("/-/register", data=taken, headers=HTML)).text)
        assert page.error_of("username") == "That username is taken."
        assert page.error_of("password2") == "The two passwords differ."
        assert page.autofocused == ["username"]
        fresh = Page((await browser.get("/-/register", headers=HTML)).text)
    assert fresh.autofocused == ["username"] and fresh.alerts == []
    assert all(fresh.is_valid(name) for name in ("username", "email", "password", "password2"))


async def test_a_used_setup_link_is_an_error_about_the_whole_form(tmp_path: Path) -> None:
    async with running(tmp_path) as found, browse(found) as browser:
        token = await setup.issue_setup_token(found.doorman.engine)
        assert token is not None
        assert await setup.claim_setup_token(found.doorman.engine, token)
        form = {"username": "root", "password": PASSWORD, "password2": PASSWORD, "token": token}
        data = {**form, "csrftoken": await csrf_token(browser)}
        answer = await browser.post("/-/setup", data=data, headers=HTML)
    assert answer.status_code == 400
    page = Page(answer.text)
    assert page.alerts == ["form-errors"]
    assert "This set-up link is not valid any more." in page.elements["form-errors"].text
    assert page.is_valid("username") and page.is_valid("password")


# -- the hint --------------------------------------------------------------------------


async def test_the_hint_lists_every_password_rule(tmp_path: Path) -> None:
    options = {"allow_registration": True, "password_min_length": 12}
    async with running(tmp_path, **options) as found, browse(found) as browser:
        page = Page((await browser.get("/-/register", headers=HTML)).text)
    assert page.elements["password-hint"].text == RULES.replace("10", "12")
    assert page.elements["password"].attrs["aria-describedby"] == "password-hint"


@pytest.mark.parametrize(
    ("path", "field_id"),
    [
        ("/-/account", "new_password"),
        ("/-/admin/users", "new-password"),
        ("/-/admin/users/bob", "reset-password"),
    ],
)
async def test_every_new_password_field_has_the_hint(
    server: Server, path: str, field_id: str
) -> None:
    async with signed_in(server) as admin:
        page = Page((await admin.get(path, headers=HTML)).text)
    assert page.elements[f"{field_id}-hint"].text.startswith(RULES)
    assert page.elements[field_id].attrs["aria-describedby"] == f"{field_id}-hint"


# -- the admin's New user form, at the bottom of the list ------------------------------


async def test_new_user_errors_sit_beside_the_form_at_the_bottom(server: Server) -> None:
    form = {
        "username": "alice",
        "email": "not-an-email",
        "password": "alice",
        "password2": "alicE",
        "groups": "ok, !bad",
    }
    async with signed_in(server) as admin:
        answer = await post(admin, "/-/admin/users", form)
        api = await json_post(admin, "/-/admin/users", form)
    assert answer.status_code == 400
    page = Page(answer.text)
    assert page.alerts == [], "nothing at the top of the page"
    assert page.error_of("new-username") == "That username is taken."
    assert "is not an email address" in page.error_of("new-email")
    password = page.error_of("new-password")
    assert "shorter than 10" in password and "too similar to the username" in password
    assert page.error_of("new-password2") == "The two passwords differ."
    assert page.error_of("new-groups").startswith("A group name is")
    assert page.autofocused == ["new-username"]
    assert page.elements["new-email"].attrs["value"] == "not-an-email"

    assert api.status_code == 400
    fields = api.json()["field_errors"]
    assert list(fields) == ["username", "email", "password", "password2", "groups"]
    assert len(api.json()["errors"]) == sum(len(found) for found in fields.values())
    assert await server.doorman.users.count() == 3


# -- password changes ------------------------------------------------------------------


async def test_password_change_reports_all_three_fields_at_once(server: Server) -> None:
    form = {"current_password": "wrong", "password": "bob", "password2": "other"}
    async with signed_in(server, "bob") as bob:
        answer = await post(bob, "/-/account/password", form)
        api = await json_post(bob, "/-/account/password", form)
    assert answer.status_code == 400
    page = Page(answer.text)
    assert page.error_of("current_password") == "The current password is wrong."
    assert "shorter than 10" in page.error_of("new_password")
    assert page.error_of("new_password2") == "The two passwords differ."
    assert page.autofocused == ["current_password"] and page.alerts == []
    assert api.status_code == 400
    assert list(api.json()["field_errors"]) == ["current_password", "password", "password2"]
    bob_now = await server.doorman.users.require("bob")
    assert (await server.doorman.hasher.verify(PASSWORD, bob_now.password_hash)).ok


async def test_admin_password_reset_reports_rules_and_mismatch_together(server: Server) -> None:
    form = {"password": "bob", "password2": "bobby"}
    async with signed_in(server) as admin:
        answer = await post(admin, "/-/admin/users/bob/password", form)
        api = await json_post(admin, "/-/admin/users/bob/password", form)
    assert answer.status_code == 400
    page = Page(answer.text)
    assert "shorter than 10 characters" in page.error_of("reset-password")
    assert page.error_of("reset-password2") == "The two passwords differ."
    assert page.autofocused == ["reset-password"] and page.is_valid("groups")
    assert list(api.json()["field_errors"]) == ["password", "password2"]


# -- the other forms -------------------------------------------------------------------


async def test_groups_and_delete_errors_sit_beside_their_fields(server: Server) -> None:
    async with signed_in(server) as admin:
        groups = Page((await post(admin, "/-/admin/users/bob/groups", {"groups": "!bad"})).text)
        wrong = await post(admin, "/-/admin/users/bob/delete", {"confirm": "bobby"})
        self_delete = await post(admin, "/-/admin/users/root/delete", {"confirm": "root"})
    assert groups.error_of("groups").startswith("A group name is")
    assert groups.autofocused == ["groups"] and groups.is_valid("reset-password")
    assert wrong.status_code == 400
    assert "does not match" in Page(wrong.text).error_of("confirm")
    assert Page(self_delete.text).alerts == ["form-errors"]


async def test_a_bad_token_lifetime_is_shown_beside_its_field(server: Server) -> None:
    async with signed_in(server, "bob") as bob:
        answer = await post(bob, "/-/account/tokens", {"name": "ci", "expires": "7"})
        api = await json_post(bob, "/-/account/tokens", {"name": "ci", "expires": "7"})
    assert answer.status_code == 400
    page = Page(answer.text)
    assert "30, 90 or 365 days, or never" in page.error_of("token-expires")
    assert page.autofocused == ["token-expires"]
    assert api.status_code == 400 and list(api.json()["field_errors"]) == ["expires"]
    assert await server.doorman.tokens.list(await server.doorman.users.require("bob")) == []
