"""User-facing errors: the CLI prints them as one red line and exits with status 2."""


class UserError(Exception):
    """A mistake the user can fix (bad path, bad config key, bad option value).

    The message must be one sentence that names the offending thing and says how to fix it.
    """

    exit_code = 2


class ConfigError(UserError, KeyError):
    """An unknown config key, a value of the wrong type, or a missing config file.

    Subclasses ``KeyError`` so that library callers can catch lookups uniformly, but prints like a
    ``UserError`` (``KeyError.__str__`` would add quotes).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
