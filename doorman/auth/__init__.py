"""Accounts and authentication: users, passwords, tokens, permissions, throttling."""

from __future__ import annotations
