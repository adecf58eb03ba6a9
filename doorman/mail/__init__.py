"""Sending mail: the server ``smtp_url`` names, messages from templates, links from public_url.

See docs/email.md. The parts that need aiosmtplib and Jinja2 (``doorman[server]``)
import them when first used, so the settings can be checked without them.
"""

from .addresses import check_address, check_sender
from .links import LinkBuilder
from .mailer import Mailer, NullMailer, Receipt, SMTPMailer
from .messages import MailTemplates
from .outbox import Outbox, mailer_from_settings
from .smtp_url import SMTPServer, parse_smtp_url

__all__ = [
    "LinkBuilder",
    "MailTemplates",
    "Mailer",
    "NullMailer",
    "Outbox",
    "Receipt",
    "SMTPMailer",
    "SMTPServer",
    "check_address",
    "check_sender",
    "mailer_from_settings",
    "parse_smtp_url",
]
