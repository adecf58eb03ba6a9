"""Where permission rules were: they are ``doorman.accounts.permissions`` now."""

from __future__ import annotations

from ..accounts import permissions as _moved
from ..accounts.permissions import *  # noqa: F403 - every public name, as it was here

__all__ = _moved.__all__
