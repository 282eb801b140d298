"""The error type for what a user gave wrong (config, manifest, checklist, output location).

The `vrscore` command prints these as one line, without a traceback; anything else is a bug
or a broken environment and is shown with its traceback. A ValueError subclass, so callers
that catch ValueError keep working.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user: the message says what to change."""
