"""Errors a user can fix.  The command line prints their message on one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: an argument, a file that is missing, a run that does not exist, a cell that cannot start."""
