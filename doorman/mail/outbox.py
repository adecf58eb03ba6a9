"""``Outbox``: the mailer, the templates and the link builder the settings describe, together.

What the flows use: ``outbox.can_send`` to know whether to offer mail at all,
``outbox.links.url(...)`` for the link, ``await outbox.send(name, to=...)`` to
render and send. Built once at start-up with ``Outbox.from_settings``, which
refuses ``smtp_url`` without ``email_from``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError
from .links import LinkBuilder
from .mailer import Mailer, NullMailer, Receipt, SMTPMailer
from .messages import MailTemplates

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["Outbox", "mailer_from_settings"]


def mailer_from_settings(settings: Settings) -> Mailer:
    """An ``SMTPMailer`` for ``smtp_url`` from ``email_from``; a ``NullMailer`` without one."""
    if settings.smtp_url is None:
        return NullMailer()
    if settings.email_from is None:
        raise ConfigError(
            "smtp_url is set but email_from is not: set email_from (DOORMAN_EMAIL_FROM) to the "
            "address messages come from, such as Doorman <noreply@example.com>"
        )
    return SMTPMailer(settings.smtp_url, sender=settings.email_from)


@dataclasses.dataclass
class Outbox:
    """Renders a message from its templates and hands it to the mailer."""

    mailer: Mailer
    templates: MailTemplates
    links: LinkBuilder

    @classmethod
    def from_settings(cls, settings: Settings) -> Outbox:
        return cls(
            mailer=mailer_from_settings(settings),
            templates=MailTemplates(
                template_dir=settings.template_dir, site_name=settings.site_name
            ),
            links=LinkBuilder.from_settings(settings),
        )

    @property
    def can_send(self) -> bool:
        return self.mailer.can_send

    async def send(self, name: str, /, *, to: str, **context: Any) -> Receipt:
        """The message ``name`` (``mail/NAME*.txt``, ``.html``) rendered for ``to``, sent."""
        return await self.mailer.send(self.templates.message(name, to=to, **context))

    async def send_test(self, to: str) -> Receipt:
        """The test message of ``doorman mail test``: it says which server carried it."""
        server = str(getattr(self.mailer, "server", type(self.mailer).__name__))
        sent_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        return await self.send("test", to=to, server=server, sent_at=sent_at)
