"""Errors meant for the person at the keyboard: one line that names the fix."""


class UserError(Exception):
    """Bad input (config, path, id...). `prefdisco` prints it as one line and exits with 2."""
