"""A real SMTP server on 127.0.0.1 for the mail tests: aiosmtpd, in a thread of its own.

``MailServer`` listens on a port the kernel picks, speaking plain SMTP, offering
or requiring STARTTLS, or TLS from the first byte, with a certificate from a
``trustme`` CA; it may take a login. Each message it accepts is parsed and kept
in ``messages``, so a test reads what was delivered (the server has it before it
answers 250). ``silent_port()`` accepts connections and never says a word (a
hung server); ``free_port()`` (tests/helpers.py) is one that nothing listens on.
The fixtures ``relay`` (plain, no login) and ``certificates`` (a CA of the module's
own) are imported by the test modules that use them.

Its own thread and loop, so the same server serves async tests and the CLI
(whose ``asyncio.run`` is a loop of its own). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"
WAIT_S = 5.0


@dataclass
class Delivered:
    """One message as the server received it."""

    sender: str
    recipients: list[str]
    message: EmailMessage
    raw: bytes
    over_tls: bool
    login: str | None

    def body(self, kind: str) -> str:
        """The ``plain`` or ``html`` part, decoded."""
        part = self.message.get_body(preferencelist=(kind,))
        assert part is not None and part.get_content_subtype() == kind, self.message
        return str(part.get_content())


class _Handler:
    def __init__(self, refused: set[str]) -> None:
        self.refused = refused
        self.messages: list[Delivered] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refused:
            return "550 5.1.1 no mailbox here by that name"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        login = session.auth_data.login.decode() if session.auth_data else None
        over_tls = server.transport.get_extra_info("ssl_object") is not None
        self.messages.append(
            Delivered(
                str(envelope.mail_from), list(envelope.rcpt_tos), parsed, raw, over_tls, login
            )
        )
        return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"


class Certificates:
    """A CA of the test's own, a certificate for 127.0.0.1 and the contexts either side."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.cert = self.ca.issue_cert(HOST, "localhost")

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """What a client that trusts this CA uses (the system's store does not)."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


class MailServer:
    """``with MailServer(starttls=context) as server:`` ... ``server.messages``."""

    def __init__(
        self,
        *,
        starttls: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        implicit_tls: ssl.SSLContext | None = None,
        logins: dict[str, str] | None = None,
        refused: set[str] | None = None,
    ) -> None:
        self.starttls = starttls
        self.require_starttls = require_starttls
        self.implicit_tls = implicit_tls
        self.logins = logins
        self.handler = _Handler(refused or set())
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    @property
    def messages(self) -> list[Delivered]:
        return self.handler.messages

    @property
    def url(self) -> str:
        return f"{'smtps' if self.implicit_tls else 'smtp'}://{HOST}:{self.port}"

    def __enter__(self) -> MailServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(WAIT_S)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(WAIT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WAIT_S)
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await self._loop.create_server(
            self._protocol, HOST, 0, ssl=self.implicit_tls
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def _protocol(self) -> SMTP:
        return SMTP(
            self.handler,
            hostname="mail.test",
            tls_context=self.starttls,
            require_starttls=self.require_starttls,
            authenticator=self._authenticate if self.logins is not None else None,
            # Under implicit TLS aiosmtpd does not see the TLS; the connection has it anyway.
            auth_require_tls=self.implicit_tls is None,
            loop=self._loop,
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self.logins is not None
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        if self.logins.get(login) != password:
            return AuthResult(success=False, handled=False)  # aiosmtpd answers 535
        return AuthResult(success=True, auth_data=data)

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        current = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is not current:
                task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WAIT_S):
                await self._server.wait_closed()


@pytest.fixture(scope="module")
def certificates() -> Certificates:
    return Certificates()


@pytest.fixture
def relay() -> Iterator[MailServer]:
    """A local relay: plain SMTP, no STARTTLS, no login (as ``python -m aiosmtpd``)."""
    with MailServer() as server:
        yield server


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen(8)
        yield sock.getsockname()[1]
