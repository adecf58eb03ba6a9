"""One exception hierarchy for doorman; each error knows the HTTP status it maps to."""

from __future__ import annotations


class DoormanError(Exception):
    """Base of every error doorman raises on purpose."""

    status_code = 500


class ConfigError(DoormanError):
    """A setting is missing or has a bad value; raised when the app is built."""


class BadSignature(DoormanError):
    """A signed value was forged, damaged or signed with an unknown key."""

    status_code = 400


class SignatureExpired(BadSignature):
    """A timestamped value has a good signature but is older than its max age."""

    def __init__(self, message: str, *, signed_at: float) -> None:
        super().__init__(message)
        self.signed_at = signed_at


class StoreError(DoormanError):
    """A store could not be reached or did not answer: doorman fails closed with 503."""

    status_code = 503


class SessionError(DoormanError):
    """Base of session misuse errors (programming errors, not client input)."""


class SessionDataError(SessionError, TypeError):
    """A session value cannot be stored: sessions hold JSON only, never pickle."""


class SessionTooLarge(SessionError):
    """The session cookie would exceed what browsers keep; it is refused, not dropped."""


class SessionNotLoaded(SessionError):
    """A lazily loaded session was read before ``await load_session(...)``."""


class SessionInterrupted(SessionError):
    """The session was deleted (logout elsewhere) while this request was using it."""

    status_code = 400
