"""Allow blocks, rules and the order in which a permission is decided."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from doorman.accounts.permissions import (
    BUILT_IN_ACTIONS,
    DEFAULT_ACTIONS,
    Rules,
    actor_matches_allow,
    check_permission,
    default_decision,
    known_actions,
)
from doorman.config import load_settings
from doorman.exceptions import ConfigError
from doorman.hookspecs import hookimpl
from doorman.plugins import make_plugin_manager

ROOT = Path(__file__).parent.parent
DOORMAN = SimpleNamespace(name="fake doorman")

ALICE = {"id": "alice", "username": "alice", "admin": False, "groups": ["editors", "staff"]}
BOB = {"id": "bob", "username": "bob", "admin": False, "groups": []}
ADMIN = {"id": "root", "username": "root", "admin": True, "groups": []}
NOBODY = None


@pytest.mark.parametrize(
    ("actor", "allow", "expected"),
    [
        (ALICE, True, True),
        (NOBODY, True, True),
        (ALICE, False, False),
        (NOBODY, False, False),
        (ALICE, None, False),
        (NOBODY, None, False),
        (ALICE, {}, False),
        (ALICE, {"id": "alice"}, True),
        (BOB, {"id": "alice"}, False),
        (ALICE, {"id": ["bob", "alice"]}, True),
        (BOB, {"id": ["carol", "dave"]}, False),
        (ALICE, {"groups": "editors"}, True),
        (ALICE, {"groups": ["admins", "staff"]}, True),  # any overlap
        (ALICE, {"groups": ["admins"]}, False),
        (BOB, {"groups": ["editors"]}, False),
        (ALICE, {"id": "*"}, True),
        (ALICE, {"id": ["*"]}, True),
        (ALICE, {"groups": "*"}, True),
        (BOB, {"groups": "*"}, False),  # an empty list is no value
        (ALICE, {"email": "*"}, False),  # no such key
        ({"id": "x", "email": None}, {"email": "*"}, False),
        (ALICE, {"id": "carol", "groups": ["staff"]}, True),  # any key is enough
        (ADMIN, {"admin": True}, True),
        (ALICE, {"admin": True}, False),
        ({"id": "x", "admin": 1}, {"admin": True}, False),  # True is not 1 here
        ({"id": "x", "level": 1}, {"level": True}, False),
        ({"id": "x", "level": 1}, {"level": [1, 2]}, True),
        (NOBODY, {"unauthenticated": True}, True),
        (ALICE, {"unauthenticated": True}, False),
        (NOBODY, {"unauthenticated": False}, False),
        (NOBODY, {"id": "*"}, False),  # anonymous matches nothing else
        (NOBODY, {"id": "*", "unauthenticated": True}, True),
        (ALICE, {"id": "*", "unauthenticated": True}, True),
        (ALICE, "yes", False),  # a bad block matches no one (Rules refuses it earlier)
        (ALICE, ["alice"], False),
    ],
)
def test_allow_blocks(actor: dict[str, Any] | None, allow: object, expected: bool) -> None:
    assert actor_matches_allow(actor, allow) is expected


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("everyone", r"permissions must be a table"),
        ({"": {"allow": True}}, r"non-empty string"),
        ({"view": True}, r"permissions\.view must be a table"),
        ({"view": {"allow": True, "alow": False}}, r"permissions\.view: unknown key 'alow'"),
        ({"view": {"allow": "yes"}}, r"permissions\.view\.allow must be true, false or a table"),
        ({"view": {"allow": {"id": {"a": 1}}}}, r"permissions\.view\.allow\.id must be"),
        ({"view": {"allow": {"id": ["a", 1.5]}}}, r"permissions\.view\.allow\.id must be"),
        ({"view": {"allow": {1: "a"}}}, r"keys must be strings"),
        ({"view": {"allow": {"unauthenticated": "yes"}}}, r"unauthenticated must be true"),
        ({"view": {"resources": ["42"]}}, r"permissions\.view\.resources must be a table"),
        ({"view": {"resources": {42: {"allow": True}}}}, r"ids are strings; write '42'"),
        ({"view": {"resources": {"42": True}}}, r"resources\.42 must be a table"),
        (
            {"view": {"resources": {"42": {}}}},
            r'resources\.42 must be a table with only an "allow"',
        ),
        ({"view": {"resources": {"42": {"allow": True, "x": 1}}}}, r"resources\.42 must be"),
        ({"view": {"resources": {"42": {"allow": 3}}}}, r"resources\.42\.allow must be"),
    ],
)
def test_rules_are_checked_when_built(rules: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Rules(rules)


@pytest.mark.parametrize(
    ("allow", "message"),
    [
        ({"grups": ["editors"]}, "unknown key 'grups' (did you mean 'groups'?); "),
        ({"ID": "alice"}, "unknown key 'ID' (did you mean 'id'?); "),
        ({"unauthenticatd": True}, "(did you mean 'unauthenticated'?)"),
        ({"colour": "blue"}, "unknown key 'colour'; an allow block matches "),
    ],
)
def test_a_misspelt_allow_key_stops_start_up(allow: dict[str, Any], message: str) -> None:
    valid = "admin, groups, id, token, username, via or unauthenticated"
    for rules in (
        {"edit": {"allow": allow}},
        {"edit": {"resources": {"42": {"allow": allow}}}},
    ):
        with pytest.raises(ConfigError) as raised:
            Rules(rules)
        text = str(raised.value)
        assert text.startswith("permissions.edit.") and message in text and valid in text
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(environ={}, overrides={"permissions": {"edit": {"allow": allow}}})


def test_plugins_actors_may_bring_their_own_keys() -> None:
    rules = Rules({"edit": {"allow": {"role": "editor"}}}, actor_keys=["role"])
    assert rules.decide({"id": "bot", "role": "editor"}, "edit") is True
    assert rules.decide({"id": "bot", "role": "reader"}, "edit") is False
    with pytest.raises(ConfigError, match="matches admin, groups, id, role, token"):
        Rules({"edit": {"allow": {"rol": "editor"}}}, actor_keys=["role"])


def test_known_actions_are_doormans_and_the_rules() -> None:
    rules = Rules({"deploy": {}, "view": {"allow": True}, "edit": {"allow": {"id": "a"}}})
    assert rules.actions == {"deploy", "view", "edit"}
    assert known_actions(rules) == [
        "account",
        "admin",
        "deploy",
        "edit",
        "login",
        "register",
        "view",
    ]
    assert set(DEFAULT_ACTIONS) <= BUILT_IN_ACTIONS


def test_rules_decide_by_resource_then_action_then_not_at_all() -> None:
    rules = Rules(
        {
            "edit": {
                "allow": {"groups": ["editors"]},
                "resources": {"42": {"allow": {"id": "bob"}}},
            },
            "publish": {"resources": {"7": {"allow": True}}},
        }
    )
    assert rules.decide(ALICE, "edit") is True
    assert rules.decide(ALICE, "edit", "1") is True
    assert rules.decide(ALICE, "edit", "42") is False  # the resource rule beats the action rule
    assert rules.decide(BOB, "edit", "42") is True
    assert rules.decide(BOB, "edit", "1") is False
    assert rules.decide(ALICE, "publish", "7") is True
    assert rules.decide(ALICE, "publish", "8") is None  # no rule for it
    assert rules.decide(ALICE, "publish") is None
    assert rules.decide(ALICE, "view") is None
    assert Rules().decide(ADMIN, "edit") is None


def test_a_resource_id_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="str"):
        Rules({}).decide(ALICE, "edit", 42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("action", "admin", "user", "anonymous"),
    [
        ("login", True, True, True),
        ("register", True, True, True),
        ("view", True, True, False),
        ("account", True, True, False),
        ("delete-everything", True, False, False),
    ],
)
def test_defaults(action: str, admin: bool, user: bool, anonymous: bool) -> None:
    assert default_decision(ADMIN, action) is admin
    assert default_decision(ALICE, action) is user
    assert default_decision(NOBODY, action) is anonymous


def test_only_a_real_true_makes_an_admin() -> None:
    assert default_decision({"id": "x", "admin": 1}, "delete-everything") is False
    assert default_decision({"id": "x", "admin": "true"}, "delete-everything") is False
    assert set(DEFAULT_ACTIONS) == {"login", "register", "view", "account"}


class Says:
    """A plugin answering permission_allowed with a fixed answer, or a coroutine of it."""

    def __init__(self, answer: object, *, awaitable: bool = False) -> None:
        self.answer = answer
        self.awaitable = awaitable
        self.asked: list[tuple[object, ...]] = []

    @hookimpl
    def permission_allowed(
        self, doorman: Any, actor: Any, action: str, resource: str | None
    ) -> object:
        self.asked.append((doorman, actor, action, resource))
        if not self.awaitable:
            return self.answer

        async def answer() -> object:
            return self.answer

        return answer()


async def check(
    actor: dict[str, Any] | None,
    action: str,
    resource: str | None = None,
    *,
    plugins: tuple[object, ...] = (),
    rules: Rules | None = None,
) -> bool:
    pm = make_plugin_manager(plugins=plugins, entry_points=False)
    return await check_permission(
        plugins=pm, doorman=DOORMAN, actor=actor, action=action, resource=resource, rules=rules
    )


@pytest.mark.anyio
@pytest.mark.parametrize("awaitable", [False, True])
async def test_a_hook_false_beats_a_rule_true(awaitable: bool) -> None:
    rules = Rules({"edit": {"allow": True}})
    assert await check(ALICE, "edit", rules=rules) is True
    assert (
        await check(ALICE, "edit", plugins=(Says(False, awaitable=awaitable),), rules=rules)
        is False
    )


@pytest.mark.anyio
@pytest.mark.parametrize("awaitable", [False, True])
async def test_a_hook_true_beats_a_default_deny(awaitable: bool) -> None:
    assert await check(ALICE, "delete-everything") is False
    plugin = Says(True, awaitable=awaitable)
    assert await check(ALICE, "delete-everything", "9", plugins=(plugin,)) is True
    assert plugin.asked == [(DOORMAN, ALICE, "delete-everything", "9")]


@pytest.mark.anyio
@pytest.mark.parametrize("order", [(True, False), (False, True)])
async def test_any_hook_false_beats_any_hook_true(order: tuple[bool, bool]) -> None:
    plugins = tuple(Says(answer, awaitable=True) for answer in order)
    assert await check(ADMIN, "view", plugins=plugins) is False
    assert all(plugin.asked for plugin in plugins)  # every plugin is asked


@pytest.mark.anyio
async def test_a_hook_with_no_opinion_leaves_it_to_the_rules() -> None:
    rules = Rules({"edit": {"allow": {"id": "alice"}}})
    plugins = (Says(None), Says(None, awaitable=True))
    assert await check(ALICE, "edit", plugins=plugins, rules=rules) is True
    assert await check(BOB, "edit", plugins=plugins, rules=rules) is False


@pytest.mark.anyio
async def test_a_hook_answer_that_is_not_a_bool_denies() -> None:
    assert await check(ADMIN, "view", plugins=(Says("yes"),)) is False


@pytest.mark.anyio
async def test_a_resource_rule_beats_the_action_rule() -> None:
    rules = Rules({"edit": {"allow": True, "resources": {"42": {"allow": {"admin": True}}}}})
    assert await check(ALICE, "edit", "41", rules=rules) is True
    assert await check(ALICE, "edit", "42", rules=rules) is False
    assert await check(ADMIN, "edit", "42", rules=rules) is True


@pytest.mark.anyio
async def test_a_rule_replaces_the_default_even_for_admins() -> None:
    rules = Rules({"delete-user": {"allow": False}, "view": {"allow": True}})
    assert await check(ADMIN, "delete-user", rules=rules) is False
    assert await check(NOBODY, "view", rules=rules) is True
    assert await check(NOBODY, "view", rules=None) is False


@pytest.mark.anyio
async def test_token_scopes_deny_even_when_a_hook_says_true() -> None:
    token = {**ADMIN, "via": "token", "scopes": ["view"]}
    plugin = Says(True)
    assert await check(token, "delete-everything", plugins=(plugin,)) is False
    assert plugin.asked == []  # a hard deny, before any plugin is asked
    assert await check(token, "view", plugins=(plugin,)) is True


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("scopes", "expected"),
    [(None, True), ([], False), (["account"], True), (("account",), True), ("account", False)],
)
async def test_token_scopes(scopes: object, expected: bool) -> None:
    # A string would match by substring ("count" in "account"): anything but a list denies.
    token = {**ALICE, "via": "token", "scopes": scopes}
    assert await check(token, "account") is expected


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("actor", "action", "expected"),
    [
        (ADMIN, "login", True),
        (ALICE, "login", True),
        (NOBODY, "login", True),
        (ADMIN, "view", True),
        (ALICE, "view", True),
        (NOBODY, "view", False),
        (ADMIN, "account", True),
        (ALICE, "account", True),
        (NOBODY, "account", False),
        (ADMIN, "delete-everything", True),
        (ALICE, "delete-everything", False),
        (NOBODY, "delete-everything", False),
    ],
)
async def test_defaults_through_check_permission(
    actor: dict[str, Any] | None, action: str, expected: bool
) -> None:
    assert await check(actor, action) is expected


@pytest.mark.anyio
async def test_check_permission_refuses_an_int_resource() -> None:
    with pytest.raises(TypeError, match="str"):
        await check(ALICE, "view", 42)  # type: ignore[arg-type]


def test_the_docs_toml_and_python_examples_agree() -> None:
    text = (ROOT / "docs" / "permissions.md").read_text()
    toml_block = re.search(r"```toml\n(.*?)```", text, flags=re.S)
    python_block = next(
        b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "= Rules(" in b
    )
    assert toml_block
    namespace: dict[str, Any] = {}
    exec(compile(python_block, "docs/permissions.md", "exec"), namespace)  # our own docs
    from_toml = Rules(tomllib.loads(toml_block.group(1))["permissions"])
    for actor in (ALICE, BOB, ADMIN, NOBODY):
        for action in ("view", "edit-page", "delete-user", "register", "export"):
            for resource in (None, "7", "42"):
                assert from_toml.decide(actor, action, resource) == namespace["rules"].decide(
                    actor, action, resource
                )
