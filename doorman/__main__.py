"""``python -m doorman`` is the ``doorman`` command."""

from .cli import main

main()
