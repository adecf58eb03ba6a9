"""Why a message was not sent, in a few words for an admin: "refused the connection".

The words come from the exception's kind and the server's reply code and text;
never from the message, so no link or body can end up in a log line.
"""

from __future__ import annotations

import re
import ssl

__all__ = ["describe_failure"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: A server's own words are cut to this many characters.
REPLY_LENGTH = 160


def describe_failure(error: BaseException, *, timeout: float) -> str:
    """What ``error`` (from aiosmtplib or the socket) says went wrong, as a verb phrase."""
    import aiosmtplib

    found = _innermost(error)
    if isinstance(error, TimeoutError) or isinstance(found, TimeoutError):
        return f"did not answer within {timeout:g} seconds"
    if isinstance(found, ssl.SSLCertVerificationError):
        return f"failed TLS: its certificate was not accepted ({found.verify_message})"
    if isinstance(found, ssl.SSLError):
        return f"failed TLS: {found.reason or 'the handshake failed'}"
    if isinstance(found, ConnectionRefusedError):
        return "refused the connection (is the mail server running, on that port?)"
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return _refusal(error, aiosmtplib)
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        return "refused the recipient: " + _said(error.recipients[0])
    if isinstance(error, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError):
        if isinstance(found, OSError) and found.strerror:
            return f"could not be reached: {found.strerror}"
        return "closed the connection"
    if isinstance(error, aiosmtplib.SMTPException):
        return _starttls_or(error.message)
    if isinstance(error, OSError):
        return f"could not be reached: {error.strerror or type(error).__name__}"
    return type(error).__name__


def _innermost(error: BaseException) -> BaseException:
    """The first cause in ``error``'s chain (aiosmtplib wraps socket and TLS errors)."""
    seen = {id(error)}
    while error.__cause__ is not None and id(error.__cause__) not in seen:
        error = error.__cause__
        seen.add(id(error))
    return error


def _refusal(error: object, aiosmtplib: object) -> str:
    kinds = (
        ("SMTPAuthenticationError", "refused the user name or password"),
        ("SMTPSenderRefused", "refused the sender address (email_from)"),
        ("SMTPRecipientRefused", "refused the recipient"),
        ("SMTPDataError", "refused the message"),
        ("SMTPHeloError", "refused the greeting (EHLO)"),
        ("SMTPConnectResponseError", "is not ready"),
    )
    for name, words in kinds:
        if isinstance(error, getattr(aiosmtplib, name)):
            return f"{words}: {_said(error)}"
    return f"answered {_said(error)}"


def _said(error: object) -> str:
    """The server's reply, ``550 5.1.1 no such user``, on one line and cut short."""
    code = getattr(error, "code", "")
    text = " ".join(_CONTROL.sub(" ", str(getattr(error, "message", ""))).split())
    if len(text) > REPLY_LENGTH:
        text = text[: REPLY_LENGTH - 3] + "..."
    return f"{code} {text}".strip()


def _starttls_or(message: str) -> str:
    if "STARTTLS" in message:
        return (
            "does not offer STARTTLS, which doorman requires on port 587 and for a login "
            "(smtps:// if it speaks TLS from the start)"
        )
    if "AUTH" in message:
        return "does not offer a login (AUTH); remove user:password from smtp_url, or use TLS"
    return " ".join(_CONTROL.sub(" ", message).split())[:REPLY_LENGTH]
