"""The mail server that ``smtp_url`` names: host, port, how TLS is used, and the login.

- ``smtp://host:PORT``: plain SMTP, upgraded with STARTTLS when the server offers
  it; a local relay such as ``smtp://127.0.0.1:1025``. Port 25 when none is given.
- ``smtp://host:587``: the submission port, where STARTTLS is required: a server
  that does not offer it gets no message (and no password).
- ``smtps://host`` (port 465 unless given): TLS from the first byte.
- ``user:password@`` before the host logs in; both are percent-decoded, so a
  password with ``@``, ``:`` or ``/`` in it is written ``%40``, ``%3A``, ``%2F``.
  A password is never sent in the clear: with one, STARTTLS is required on any
  port, unless the relay is on this machine (``127.0.0.1``, ``::1``, ``localhost``).

Messages about a bad URL never repeat the URL (it may hold a password).
Standard library only: the settings check ``smtp_url`` without the mail packages.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import urllib.parse
from typing import Literal

__all__ = ["SMTPServer", "Security", "parse_smtp_url", "with_password"]

#: ``tls``: TLS from the start (smtps://); ``starttls``: required; ``starttls-if-offered``.
Security = Literal["tls", "starttls", "starttls-if-offered"]

EXAMPLE = "smtp://user:password@smtp.example.com:587"
_DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
SUBMISSION_PORT = 587
IMPLICIT_TLS_PORT = 465
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")


@dataclasses.dataclass(frozen=True)
class SMTPServer:
    """Where and how to hand over mail; ``str()`` is ``host:port``, never the login."""

    host: str
    port: int
    security: Security
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_smtp_url(url: str) -> SMTPServer:
    """The ``SMTPServer`` of an ``smtp://`` or ``smtps://`` URL; ``ValueError`` otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"give a URL such as {EXAMPLE}")
    url = url.strip()
    if _UNSAFE.search(url):
        raise ValueError("the URL has a space or a control character; percent-encode it (%20)")
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(
            "give an smtp:// URL (STARTTLS when offered; required on port 587) or an smtps:// "
            f"URL (TLS from the start), such as {EXAMPLE}"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(
            "give no path, query or fragment: smtp://[user:password@]host[:port]; a password "
            "with / ? or # in it is percent-encoded (%2F %3F %23)"
        )
    host = parts.hostname
    if not host:
        raise ValueError(f"give the mail server's host, such as {EXAMPLE}")
    port = _port(parts, scheme)
    username, password = _login(parts)
    security = _security(scheme, port, host, has_password=password is not None)
    return SMTPServer(host, port, security, username, password)


def _port(parts: urllib.parse.SplitResult, scheme: str) -> int:
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port is not a number from 1 to 65535; give one such as 587") from None
    if port == 0:
        raise ValueError("the port is not a number from 1 to 65535; give one such as 587")
    if scheme == "smtp" and port == IMPLICIT_TLS_PORT:
        raise ValueError(
            "port 465 speaks TLS from the first byte: write smtps:// for it (smtp:// on 587 "
            "upgrades with STARTTLS)"
        )
    return _DEFAULT_PORTS[scheme] if port is None else port


def _login(parts: urllib.parse.SplitResult) -> tuple[str | None, str | None]:
    if parts.username is None and parts.password is None:
        return None, None
    username = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password) if parts.password is not None else ""
    if not username or not password:
        raise ValueError(
            "give both the user name and the password (user:password@host), or neither"
        )
    return username, password


def _security(scheme: str, port: int, host: str, *, has_password: bool) -> Security:
    if scheme == "smtps":
        return "tls"
    if port == SUBMISSION_PORT or (has_password and not _on_this_machine(host)):
        return "starttls"
    return "starttls-if-offered"


def _on_this_machine(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def with_password(url: str, password: str) -> str:
    """``url`` (``smtp://user@host:587``) with ``password`` put in, percent-encoded.

    For the settings' table form, whose password comes on its own (from ``$file``).
    """
    if not isinstance(url, str) or not isinstance(password, str) or not password:
        raise ValueError("give url and password as text")
    parts = urllib.parse.urlsplit(url.strip())
    if parts.password is not None:
        raise ValueError("the url has a password already; give it in one place only")
    if not parts.username:
        raise ValueError(
            "give the user name in the url (smtp://user@host:587) when password is given apart"
        )
    user, _, host = parts.netloc.rpartition("@")
    secret = urllib.parse.quote(password, safe="")
    return parts._replace(netloc=f"{user}:{secret}@{host}").geturl()
