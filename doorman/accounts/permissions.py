"""Who may do what: allow blocks (as in Datasette), rules, defaults and the decision order.

``check_permission`` decides, in this order, and the first step with an answer wins:

1. a token limited to ``scopes`` may do nothing outside them;
2. the ``permission_allowed`` plugin hooks: any False denies, else any True allows;
3. the configured ``Rules``: the resource's allow block, else the action's;
4. the defaults: ``DEFAULT_ACTIONS``, and admins only for every other action.

Pure: no HTTP here. Resource ids are strings; pass ``str(42)``, never ``42``.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import pluggy

from ..exceptions import ConfigError
from ..plugins import all_results

__all__ = [
    "ACTOR_KEYS",
    "BUILT_IN_ACTIONS",
    "DEFAULT_ACTIONS",
    "Rules",
    "actor_matches_allow",
    "check_permission",
    "default_decision",
    "known_actions",
    "validate_allow",
]

log = logging.getLogger("doorman.permissions")

Actor = Mapping[str, Any]

#: Actions with a default other than "admins only". Admins may always do everything.
DEFAULT_ACTIONS: Mapping[str, object] = MappingProxyType(
    {
        "login": True,  # anyone, signed in or not
        "register": True,
        "view": {"id": "*"},  # any signed-in actor
        "account": {"id": "*"},
    }
)

#: The actions doorman itself checks (``admin``: the admin pages) or has a default for.
BUILT_IN_ACTIONS: frozenset[str] = frozenset({*DEFAULT_ACTIONS, "admin"})

#: The keys of doorman's own actors, which allow blocks match (and ``unauthenticated``).
ACTOR_KEYS: frozenset[str] = frozenset({"id", "username", "admin", "groups", "via", "token"})

_SCALARS = (str, int, bool)
_ACTION_KEYS = frozenset({"allow", "resources"})


def actor_matches_allow(actor: Actor | None, allow: object) -> bool:
    """Whether ``actor`` (None when anonymous) matches an allow block.

    ``True`` matches everyone, anonymous included; ``False`` and ``None`` no one.
    A dict matches when any of its keys matches: a value, or a list of values,
    equal to the actor's value for that key (or, when the actor's value is a
    list such as ``groups``, to any item of it); ``"*"`` matches any actor with
    a value for the key. ``{"unauthenticated": True}`` matches anonymous only,
    and anonymous matches nothing else. Anything else matches no one: check
    blocks with ``validate_allow`` when the app is built.
    """
    if allow is True:
        return True
    if not isinstance(allow, Mapping):
        return False
    if actor is None:
        return allow.get("unauthenticated") is True
    for key, wanted in allow.items():
        if key == "unauthenticated":
            continue
        wanted = wanted if isinstance(wanted, list) else [wanted]
        have = actor.get(key)
        have = have if isinstance(have, list) else [] if have is None else [have]
        if have and "*" in wanted:
            return True
        if any(_same(value, w) for value in have for w in wanted):
            return True
    return False


def _same(a: object, b: object) -> bool:
    """Equal, and not because True == 1: ``{"admin": True}`` must not match ``"admin": 1``."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def validate_allow(allow: object, where: str, *, actor_keys: Iterable[str] = ()) -> None:
    """Raise ``ConfigError`` naming ``where`` unless ``allow`` is a well-formed allow block.

    Its keys are ``ACTOR_KEYS``, ``unauthenticated`` and ``actor_keys``, the
    keys of actors your plugins make: a misspelt key would match no one.
    """
    if allow is None or isinstance(allow, bool):
        return
    if not isinstance(allow, Mapping):
        raise ConfigError(
            f'{where} must be true, false or a table such as {{id = ["alice"]}}, not {allow!r}'
        )
    known = sorted(ACTOR_KEYS | set(actor_keys))
    for key, value in allow.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}: keys must be strings, not {key!r}")
        if key != "unauthenticated" and key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}{_key_hint(key, known)}")
        if key == "unauthenticated":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.unauthenticated must be true or false, not {value!r}")
            continue
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if not isinstance(v, _SCALARS)]
        if bad:
            raise ConfigError(
                f"{where}.{key} must be a string, number, boolean or a list of them, not {value!r}"
            )


def _key_hint(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key.lower(), [*known, "unauthenticated"], n=1)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{guess}; an allow block matches {', '.join(known)} or unauthenticated"


class Rules:
    """Configured permissions, checked when built: ``{action: {"allow": ..., "resources": ...}}``.

    ``resources`` maps a resource id (a string) to ``{"allow": ...}``. Both keys
    are optional; any other key is a ``ConfigError``, as is an allow block key
    other than ``ACTOR_KEYS``, ``unauthenticated`` and ``actor_keys``.
    """

    def __init__(
        self, rules: Mapping[str, Any] | None = None, *, actor_keys: Iterable[str] = ()
    ) -> None:
        self._actor_keys = tuple(actor_keys)
        self._allow: dict[str, object] = {}
        self._resources: dict[str, dict[str, object]] = {}
        if rules is None:
            return
        if not isinstance(rules, Mapping):
            raise ConfigError(f"permissions must be a table of actions, not {rules!r}")
        for action, rule in rules.items():
            self._add(action, rule)

    def _add(self, action: object, rule: object) -> None:
        if not isinstance(action, str) or not action:
            raise ConfigError(f"permissions: an action must be a non-empty string, not {action!r}")
        where = f"permissions.{action}"
        if not isinstance(rule, Mapping):
            raise ConfigError(f'{where} must be a table with "allow" and/or "resources"')
        unknown = sorted(map(str, set(rule) - _ACTION_KEYS))
        if unknown:
            raise ConfigError(f'{where}: unknown key {unknown[0]!r}; use "allow" or "resources"')
        if "allow" in rule:
            validate_allow(rule["allow"], f"{where}.allow", actor_keys=self._actor_keys)
            self._allow[action] = rule["allow"]
        resources = rule.get("resources", {})
        if not isinstance(resources, Mapping):
            raise ConfigError(f"{where}.resources must be a table of resource ids")
        self._resources[action] = {}
        for resource, block in resources.items():
            if not isinstance(resource, str):
                raise ConfigError(f"{where}.resources: ids are strings; write {str(resource)!r}")
            place = f"{where}.resources.{resource}"
            if not isinstance(block, Mapping) or set(block) != {"allow"}:
                raise ConfigError(f'{place} must be a table with only an "allow" key')
            validate_allow(block["allow"], f"{place}.allow", actor_keys=self._actor_keys)
            self._resources[action][resource] = block["allow"]

    @property
    def actions(self) -> frozenset[str]:
        """The actions these rules name; an empty table names one without a rule."""
        return frozenset(self._resources)

    def decide(self, actor: Actor | None, action: str, resource: str | None = None) -> bool | None:
        """The resource's rule when there is one, else the action's; None when neither exists."""
        _check_resource(resource)
        resources = self._resources.get(action, {})
        if resource is not None and resource in resources:
            return actor_matches_allow(actor, resources[resource])
        if action in self._allow:
            return actor_matches_allow(actor, self._allow[action])
        return None

    def __repr__(self) -> str:
        return f"<Rules for actions {sorted(self._resources)}>"


def known_actions(rules: Rules) -> list[str]:
    """The actions there are, sorted: doorman's own and those ``rules`` name.

    A token's scopes are checked against them where a person types scopes
    (``doorman tokens create --scope``), so a typo is refused, not kept as a
    token that may do nothing.
    """
    return sorted(BUILT_IN_ACTIONS | rules.actions)


def default_decision(actor: Actor | None, action: str) -> bool:
    """Admins may do everything; others what ``DEFAULT_ACTIONS`` allows; no one anything else."""
    if actor is not None and actor.get("admin") is True:
        return True
    return actor_matches_allow(actor, DEFAULT_ACTIONS.get(action, False))


async def check_permission(
    *,
    plugins: pluggy.PluginManager,
    doorman: Any,
    actor: Actor | None,
    action: str,
    resource: str | None = None,
    rules: Rules | None,
) -> bool:
    """Whether ``actor`` may do ``action`` (on ``resource``), in the order the module describes.

    A hook answer other than True, False or None counts as False: a plugin bug fails closed.
    """
    _check_resource(resource)
    scopes = actor.get("scopes") if actor is not None else None
    if scopes is not None and (not isinstance(scopes, list | tuple) or action not in scopes):
        return _decided(False, "token scopes", actor, action, resource)
    hook = plugins.hook.permission_allowed
    answers = (
        await all_results(hook, doorman=doorman, actor=actor, action=action, resource=resource)
        if hook.get_hookimpls()
        else ()
    )
    if answers:
        allowed = all(answer is True for answer in answers)
        return _decided(allowed, "permission_allowed hooks", actor, action, resource)
    decision = rules.decide(actor, action, resource) if rules is not None else None
    if decision is not None:
        return _decided(decision, "rules", actor, action, resource)
    return _decided(default_decision(actor, action), "defaults", actor, action, resource)


def _check_resource(resource: object) -> None:
    if resource is not None and not isinstance(resource, str):
        # An int would silently miss a rule written for "42" and fall back to a wider one.
        raise TypeError(f"resource ids are strings or None; pass str({resource!r})")


def _decided(
    allowed: bool, step: str, actor: Actor | None, action: str, resource: str | None
) -> bool:
    who = actor.get("id") if actor is not None else None
    log.debug(
        "%s %r for %r on %r, by %s", "allow" if allowed else "deny", action, who, resource, step
    )
    return allowed
