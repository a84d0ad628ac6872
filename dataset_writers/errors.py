"""Errors of the writers; all are ``UserError``s, so the CLI prints them as one line and exits 2."""
from ffcv_ssl.errors import UserError


class WriterError(UserError):
    """Bad root, bad annotation, bad option: nothing was written."""


class ImageError(WriterError):
    """One image cannot be read; ``path`` names it so ``--on-error skip`` can list it in the manifest."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # picklable across writer worker processes
        return (ImageError, (self.path, self.reason))


class BetonError(WriterError):
    """A beton that cannot be read safely (missing, truncated, damaged header or tables): nothing was read."""
