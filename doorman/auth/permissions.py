"""Where permission rules were: they are ``doorman.accounts.permissions`` now."""

from __future__ import annotations

from ..accounts.permissions import (
    ACTOR_KEYS,
    BUILT_IN_ACTIONS,
    DEFAULT_ACTIONS,
    Rules,
    actor_matches_allow,
    check_permission,
    default_decision,
    known_actions,
    validate_allow,
)

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
