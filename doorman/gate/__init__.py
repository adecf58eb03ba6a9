"""``ExistingCookiesGate``: sign-in for an app on another host than the sign-in server.

The gate itself is in ``existing_cookies.py``; what it reads from a request and
how it answers in ``answers.py``; the checks of its options in ``options.py``.
"""

from __future__ import annotations

from .existing_cookies import ExistingCookiesGate

__all__ = ["ExistingCookiesGate"]
