"""One exception hierarchy for doorman; each error knows the HTTP status it maps to."""

from __future__ import annotations


class DoormanError(Exception):
    """Base of every error doorman raises on purpose."""

    status_code = 500


class ConfigError(DoormanError):
    """A setting is missing or has a bad value; raised when the app is built."""


class MissingDependency(DoormanError, ModuleNotFoundError):
    """An optional package is not installed; the message names the extra that brings it.

    Still an ``ImportError`` (and a ``ModuleNotFoundError``), so ``except ImportError``
    around an optional import keeps working.
    """

    def __init__(self, module: str, *, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs {module}, which is not installed: pip install 'doorman[{extra}]'",
            name=module,
        )
        self.extra = extra


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


class RequestTooLarge(DoormanError):
    """The request body is larger than doorman reads (``max_body_size``): 413."""

    status_code = 413


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


class AuthenticationFailed(DoormanError):
    """Credentials were wrong, unknown, expired or revoked; the message never says which."""

    status_code = 401


class Throttled(AuthenticationFailed):
    """Too many failed sign-ins for this account or address; try again after ``retry_after``."""

    status_code = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Busy(Throttled):
    """So many attempts were in flight that this one could not be checked in time (503)."""

    status_code = 503


class Abandoned(Busy):
    """The client hung up while its attempt waited for a slot: nothing was checked.

    The status (nginx's 499, "client closed request") reaches no one but the access log.
    """

    status_code = 499


class PermissionDenied(DoormanError):
    """The actor may not do this."""

    status_code = 403


class AccountError(DoormanError, ValueError):
    """A request about accounts that cannot be done as asked (bad username, and so on)."""

    status_code = 400


class PasswordRejected(AccountError):
    """A new password fails validation; ``problems`` lists every reason, in words."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class UserNotFound(AccountError):
    """No user has this id or username."""

    status_code = 404


class UsernameTaken(AccountError):
    """Another user already has this username (compared without case)."""

    status_code = 409


class UsernameTooSimilar(UsernameTaken):
    """Another user's username looks like this one (``doorman._lookalikes``)."""


class AddressTaken(AccountError):
    """Another account holds this address verified; which one is never said."""

    status_code = 409

    def __init__(self, message: str = "this email address cannot be used") -> None:
        super().__init__(message)


class DumpError(DoormanError, ValueError):
    """A dump cannot be loaded: it is not as ``doorman.transfer.dump`` writes it, or clashes."""

    status_code = 400


class MailNotSent(DoormanError):
    """The mail server is down, refused the message or did not answer in time (503).

    The message names the server and the reason, never the message's text or
    links; nothing is lost: the request can be repeated.
    """

    status_code = 503


class MailNotConfigured(MailNotSent):
    """No ``smtp_url`` is set, so doorman sends no mail."""


class NoTrustedOrigin(DoormanError):
    """No link is built: without ``public_url`` (or an allowed request origin), a link
    could point wherever a forged ``Host`` header says (503: the admin sets ``public_url``)."""

    status_code = 503


class WeakSecretWarning(UserWarning):
    """A secret accepted for Starlette's sake (``secret_key=``) is too short to be safe."""
