"""An account's second factors in words and in JSON, as the admin pages and the CLI show them."""

from __future__ import annotations

from typing import Any

from .second_factors import SecondFactorsSummary

__all__ = ["describe_factors", "factors_json", "reset_detail"]


def describe_factors(summary: SecondFactorsSummary) -> str:
    """ "TOTP, 2 passkeys, 8 recovery codes"; "none" when there is nothing."""
    parts = []
    if summary.totp:
        parts.append("TOTP")
    if summary.passkeys:
        parts.append(f"{summary.passkeys} passkey{'s' if summary.passkeys != 1 else ''}")
    if summary.recovery_codes:
        count = summary.recovery_codes
        parts.append(f"{count} recovery code{'s' if count != 1 else ''}")
    return ", ".join(parts) or "none"


def factors_json(summary: SecondFactorsSummary) -> dict[str, Any]:
    """``{"on": true, "totp": true, "passkeys": 2, "recovery_codes": 8}``: ``on`` is whether a
    sign-in with a password needs a second step."""
    return {
        "on": summary.any,
        "totp": summary.totp,
        "passkeys": summary.passkeys,
        "recovery_codes": summary.recovery_codes,
    }


def reset_detail(had: SecondFactorsSummary) -> dict[str, Any]:
    """What a reset took away, for the event log, whose keys never name a secret ("otp", "code"):
    ``{"authenticator_app": true, "passkeys": 2, "recovery_left": 8}``."""
    return {
        "authenticator_app": had.totp,
        "passkeys": had.passkeys,
        "recovery_left": had.recovery_codes,
    }
