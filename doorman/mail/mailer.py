"""Handing messages to a mail server: ``SMTPMailer``, or ``NullMailer`` when there is none.

``SMTPMailer`` opens one connection per message with aiosmtplib (TLS as the
``SMTPServer`` says, certificates checked against the system's trust store or
the ``tls_context`` given), and gives up after ``timeout`` seconds in all. A
server that is down, refuses or hangs raises ``MailNotSent``: one line naming the
server and what went wrong, and a warning on the ``doorman.mail`` logger with
the recipient and the subject; never the text, a link or the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import logging
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Protocol

from .._extras import needs_extra
from ..exceptions import MailNotConfigured, MailNotSent
from .addresses import check_address, check_sender
from .failures import describe_failure
from .smtp_url import SMTPServer, parse_smtp_url

if TYPE_CHECKING:
    import aiosmtplib

__all__ = ["Mailer", "NullMailer", "Receipt", "SMTPMailer"]

log = logging.getLogger("doorman.mail")
DEFAULT_TIMEOUT = 10.0
#: How long a polite QUIT, and closing the connection (TLS says goodbye too), may take.
CLOSE_TIMEOUT = 1.0


@dataclasses.dataclass(frozen=True)
class Receipt:
    """A message the server accepted, and what it said: ``250 2.0.0 Ok: queued as 4ZQ``."""

    recipient: str
    server: str
    #: ``TLS`` (smtps://), ``STARTTLS``, or ``no TLS`` (a relay that offered none).
    security: str
    reply: str


class Mailer(Protocol):
    """What sends messages: ``SMTPMailer``, ``NullMailer``, or your own."""

    @property
    def can_send(self) -> bool:
        """Whether a message would be handed to a server at all."""
        ...

    async def send(self, message: EmailMessage) -> Receipt:
        """Hand ``message`` over, or raise ``MailNotSent``."""
        ...


class NullMailer:
    """No mail server is configured: nothing is sent, and ``send`` says so."""

    can_send = False

    async def send(self, message: EmailMessage) -> Receipt:
        raise MailNotConfigured(
            "smtp_url is not set, so doorman sends no mail; set it (DOORMAN_SMTP_URL), "
            "see docs/email.md"
        )


class SMTPMailer:
    """Sends each message over a connection of its own to ``server``, from ``sender``."""

    can_send = True

    def __init__(
        self,
        server: SMTPServer | str,
        *,
        sender: str,
        timeout: float = DEFAULT_TIMEOUT,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        with needs_extra("server", "sending mail"):
            import aiosmtplib  # noqa: F401 - missing: say so when built, not at the first message
        self.server = parse_smtp_url(server) if isinstance(server, str) else server
        self.sender = check_sender(sender)
        self.timeout = timeout
        self.tls_context = tls_context
        self.local_hostname = local_hostname

    def __repr__(self) -> str:
        return f"SMTPMailer({str(self.server)!r}, security={self.server.security!r})"

    async def send(self, message: EmailMessage) -> Receipt:
        """Hand ``message`` (with a ``To``) over; ``From``, ``Date``, ``Message-ID`` are added."""
        import aiosmtplib

        recipient = check_address(str(message["To"] or ""))
        self._complete(message)
        client = self._client()
        connection = None
        try:
            async with asyncio.timeout(self.timeout):
                await client.connect()  # with STARTTLS and the login, as configured
                connection = client.get_transport_info("socket")
                security = self._security(client)
                _refused, said = await client.send_message(message)
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await client.quit()
        except (aiosmtplib.SMTPException, OSError) as error:  # TimeoutError is an OSError
            reason = describe_failure(error, timeout=self.timeout)
            log.warning(
                "mail to %s not sent (subject %r): %s %s",
                recipient, str(message["Subject"] or ""), self.server, reason,
            )  # fmt: skip
            raise MailNotSent(f"mail not sent: {self.server} {reason}") from None
        finally:
            client.close()
            await _closed(connection)
        # send_message returns only once DATA got its 250; it raises for anything else.
        reply = f"250 {' '.join(said.split())}"
        log.info("mail to %s accepted by %s: %s", recipient, self.server, reply)
        return Receipt(recipient, str(self.server), security, reply)

    def _complete(self, message: EmailMessage) -> None:
        if message["From"] is None:
            message["From"] = self.sender
        if message["Date"] is None:
            message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        if message["Message-ID"] is None:
            domain = self.sender.rpartition("@")[2].rstrip(">")
            message["Message-ID"] = email.utils.make_msgid(domain=domain)

    def _client(self) -> aiosmtplib.SMTP:
        import aiosmtplib

        server = self.server
        return aiosmtplib.SMTP(
            hostname=server.host,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.security == "tls",
            start_tls={"tls": False, "starttls": True}.get(server.security),
            tls_context=self.tls_context,
            local_hostname=self.local_hostname,
            timeout=self.timeout,
        )

    def _security(self, client: aiosmtplib.SMTP) -> str:
        if self.server.security == "tls":
            return "TLS"
        return "STARTTLS" if client.get_transport_info("sslcontext") is not None else "no TLS"


async def _closed(connection: Any) -> None:
    """Wait, briefly, until the connection's socket (if it got one) is closed.

    Closing a TLS connection takes a round trip (close_notify) on the event
    loop, and no event says when it is over; a loop that ends first, as
    ``doorman mail test``'s does, would leave the socket open.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CLOSE_TIMEOUT
    pause = 0.0  # a plain connection closes on the loop's next turn
    while connection is not None and connection.fileno() != -1 and loop.time() < deadline:
        await asyncio.sleep(pause)
        pause = 0.005
