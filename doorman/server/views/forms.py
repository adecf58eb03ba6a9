"""What is wrong with a submitted form, field by field, for pages and for JSON.

Every check of a form runs before it answers, so a person sees every problem
at once. Each message belongs to the field it is about, or to the form as a
whole (``""``: a set-up link used meanwhile, say). Pages show a field's
messages beside it (``templates/_fields.html``); JSON answers keep the flat
``errors`` list and add ``field_errors``, the same messages by field name.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ...accounts.names import check_email, check_new_username
from ...accounts.passwords import password_rules
from ...exceptions import AccountError, UsernameTaken, UsernameTooSimilar

if TYPE_CHECKING:
    from ...core import Doorman

__all__ = ["FormErrors", "check_new_password", "new_account_problems", "password_hint", "sentence"]


@dataclasses.dataclass
class FormErrors:
    """Messages by field name, in the order found, and those about the whole form."""

    by_field: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    general: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def of(cls, *messages: str) -> FormErrors:
        """Errors about the whole form."""
        return cls(general=list(messages))

    def add(self, message: str, field: str = "") -> None:
        if field:
            self.by_field.setdefault(field, []).append(message)
        else:
            self.general.append(message)

    def __bool__(self) -> bool:
        return bool(self.general or self.by_field)

    @property
    def messages(self) -> list[str]:
        """Every message: the whole form's first, then each field's."""
        return [*self.general, *(m for found in self.by_field.values() for m in found)]

    def context(self) -> dict[str, Any]:
        """For a template: ``errors`` above the form, ``field_errors`` beside each field."""
        return {"errors": self.general, "field_errors": self.by_field}

    def json(self) -> dict[str, Any]:
        return {"errors": self.messages, "field_errors": self.by_field}


async def check_new_password(
    errors: FormErrors,
    doorman: Doorman,
    password: str,
    again: str,
    *,
    username: str | None,
    email: str | None,
) -> None:
    """The rules against field ``password``; ``password2`` must repeat it."""
    problems = await doorman.password_problems(password, username=username, email=email)
    for problem in problems:
        errors.add(f"This password {problem}.", "password")
    if password != again:
        errors.add("The two passwords differ.", "password2")


def password_hint(doorman: Doorman) -> str:
    """Every built-in rule a new password must pass, as one sentence for the form's hint.

    A plugin's ``validate_password`` rules cannot describe themselves: their
    messages show beside the field when a password breaks them.
    """
    text = "; ".join(password_rules(min_length=doorman.password_min_length))
    return text[:1].upper() + text[1:] + "."


ADDRESS_TAKEN = "This email address cannot be used: choose another one."


async def new_account_problems(
    doorman: Doorman,
    username: str,
    email: str,
    password: str,
    again: str,
    *,
    chosen_address: bool = True,
) -> FormErrors:
    """Every problem of a new account's fields: username, email, and both passwords.

    A ``chosen_address`` (typed, not an invitation's) that another account holds
    verified is refused: one verified address, one account.
    """
    errors = FormErrors()
    try:
        check_new_username(username)
    except AccountError as error:
        errors.add(sentence(error), "username")
    else:
        try:
            await doorman.users.check_free(username)
        except UsernameTooSimilar:
            errors.add("That username is too similar to an existing one.", "username")
        except UsernameTaken:
            errors.add("That username is taken.", "username")
    try:
        check_email(email)
    except AccountError as error:
        errors.add(sentence(error), "email")
    else:
        if chosen_address and await doorman.users.verified_elsewhere(email):  # not who has it
            errors.add(ADDRESS_TAKEN, "email")
    await check_new_password(
        errors, doorman, password, again, username=username, email=email or None
    )
    return errors


def sentence(error: Exception) -> str:
    """An error's message as a sentence: capital first letter, full stop."""
    text = str(error)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
