"""Messages from Jinja2 templates, in plain text and HTML, overridable like the pages.

A message called ``NAME`` has three templates: ``mail/NAME_subject.txt`` (one
line), ``mail/NAME.txt`` and ``mail/NAME.html`` (the same words, for mail
clients that show HTML). doorman's own are in ``doorman/mail/templates/``; a
file of the same name under ``template_dir/mail/`` takes its place, as
``template_dir/login.html`` does for the login page. The HTML is escaped; the
plain text is not (it is not HTML), and the subject is folded onto one line.
"""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._extras import needs_extra
from .addresses import check_address

if TYPE_CHECKING:
    import jinja2

__all__ = ["MailTemplates"]

_PACKAGE_TEMPLATES = Path(__file__).parent / "templates"


class MailTemplates:
    """``message("test", to="alice@example.com", server=...)``: an ``EmailMessage`` to send."""

    def __init__(self, *, template_dir: str | None = None, site_name: str = "doorman") -> None:
        with needs_extra("server", "mail templates"):
            import jinja2
        loaders: list[jinja2.BaseLoader] = []
        if template_dir:
            loaders.append(jinja2.FileSystemLoader(template_dir))
        loaders.append(jinja2.PrefixLoader({"mail": jinja2.FileSystemLoader(_PACKAGE_TEMPLATES)}))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(["html"], default_for_string=True),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        self.env.globals.update(site_name=site_name)

    def message(self, name: str, /, *, to: str, **context: Any) -> EmailMessage:
        """The message ``name`` for ``to``, its three templates rendered with ``context``."""
        context = {**context, "to": to}
        subject = " ".join(self._render(f"mail/{name}_subject.txt", context).split())
        message = EmailMessage()
        message["To"] = check_address(to)
        message["Subject"] = subject
        message.set_content(self._render(f"mail/{name}.txt", context))
        message.add_alternative(self._render(f"mail/{name}.html", context), subtype="html")
        return message

    def _render(self, template: str, context: dict[str, Any]) -> str:
        return self.env.get_template(template).render(context)
