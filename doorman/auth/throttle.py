"""Where the sign-in throttle was: it is ``doorman.accounts.throttle`` now."""

from __future__ import annotations

from ..accounts.throttle import Attempt, Counter, LoginThrottle, RegistrationThrottle, counter_for
from ..stores.memory import MemoryCounter
from ..stores.sql import SQLCounter

__all__ = [
    "Attempt",
    "Counter",
    "LoginThrottle",
    "MemoryCounter",
    "RegistrationThrottle",
    "SQLCounter",
    "counter_for",
]
