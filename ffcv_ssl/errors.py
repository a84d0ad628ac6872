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


# errno name -> what to do about it; the path comes from ``OSError.filename`` (see ``os_error_message``)
_OS_FIXES = {
    "ENOSPC": "no space left on the device; free space there or choose another output directory",
    "EDQUOT": "disk quota exceeded; free space there or choose another output directory",
    "EACCES": "permission denied; fix its permissions or choose another path",
    "EPERM": "operation not permitted; fix its permissions or choose another path",
    "EROFS": "read-only file system; choose an output directory on a writable file system",
    "ENOENT": "no such file or directory; check the path",
    "EISDIR": "is a directory where a file was expected; give a file path",
    "ENOTDIR": "a part of the path is a file, not a directory; choose another path",
    "EEXIST": "already exists; remove it or choose another path",
    "EMFILE": "too many open files; raise 'ulimit -n' or use fewer workers",
    "EIO": "input/output error; check the device (dmesg) and retry",
}


def os_error_message(exc: OSError) -> str:
    """One line for an ``OSError`` that reached the CLI: the path(s) it names, what happened, and a fix.

    Why here and not at every ``open``: any of hundreds of file operations can hit a full disk, a read-only
    mount or a permission problem; the operating system's errno already says which, so one mapping at the
    boundary covers them all (``--debug`` still shows the traceback).
    """
    import errno as _errno

    name = _errno.errorcode.get(exc.errno or 0, "")
    where = " -> ".join(f"'{p}'" for p in (exc.filename, exc.filename2) if p is not None)
    what = _OS_FIXES.get(name) or f"{exc.strerror or type(exc).__name__}; check the path and retry"
    code = f" [{name}]" if name else ""
    return f"{where or 'a file operation'}: {what}{code}"
