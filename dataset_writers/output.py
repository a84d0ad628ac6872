"""Claiming an output path for one write: checks, an exclusive lock, and the leftovers of killed writers.

Why a lock: two writes to the same ``--out`` (a sweep submitted twice, a requeued job beside its old
self) would both succeed and the last rename would silently replace the other's beton. The writer holds
``fcntl.flock`` on ``.NAME.beton.lock`` beside the output for the whole write; a second writer fails at
once, naming the process that holds it. ``--overwrite`` does not change that: it replaces a finished
beton, never one being written (waiting would only redo the same work and then replace it).

Why a cleanup: a writer killed with SIGKILL (or by the OOM killer, or a node failure) cannot remove its
``.NAME.beton.tmp-PID`` temporary, which is as large as the beton. The next write to the same output,
once it holds the lock, removes the temporaries whose PID is no longer alive.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List

from ffcv_ssl.util import pid_alive

from .errors import WriterError
from .manifest import manifest_path

_HELD: Dict[Path, int] = {}          # outputs this process holds (write_dataset -> write_split re-enter)


def temp_path(out: Path) -> Path:
    """The hidden temporary a beton is written to before its rename (one per writer process)."""
    return out.with_name(f".{out.name}.tmp-{os.getpid()}")


def lock_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.lock")


def os_error(where: Path, exc: OSError, doing: str) -> WriterError:
    """One line for an OS error while writing under ``where``: what happened, and what to do."""
    code = errno.errorcode.get(exc.errno or 0, "")
    fixes = {
        "ENOSPC": "no space left on the device; free space there or choose another --out",
        "EDQUOT": "disk quota exceeded; free space there or choose another --out",
        "EROFS": "read-only file system; choose an --out on a writable file system",
        "EACCES": "permission denied; make the directory writable or choose another --out",
        "EPERM": "operation not permitted; make the directory writable or choose another --out",
    }
    what = fixes.get(code, f"{exc.strerror or exc}; check the path and retry")
    return WriterError(f"{where}: {doing}: {what}" + (f" [{code}]" if code else ""))


def check_output_path(out: Path, overwrite: bool) -> Path:
    """The checks that need no lock: a file name ending in .beton, in a directory, not there unless overwrite."""
    out = Path(out)
    if out.is_dir():
        raise WriterError(f"--out {out} is a directory; give a file name ending in .beton")
    if out.suffix != ".beton":
        raise WriterError(f"--out {out} must end in .beton")
    if out.exists() and not overwrite:
        raise WriterError(f"{out} already exists; pass --overwrite to replace it")
    if out.parent.exists() and not out.parent.is_dir():
        raise WriterError(f"{out.parent} is a file, not a directory; choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(out.parent, exc, "cannot create the output directory") from None
    return out


def remove_stale_temporaries(out: Path) -> List[Path]:
    """Remove the beton and manifest temporaries of writers to ``out`` whose process is gone."""
    patterns = [re.compile(rf"^\.{re.escape(out.name)}\.tmp-(\d+)$"),                     # the beton
                re.compile(rf"^\.{re.escape(manifest_path(out).name)}\.tmp(\d+)$")]        # files.atomic_write
    removed = []
    for entry in os.scandir(out.parent):
        for pattern in patterns:
            m = pattern.match(entry.name)
            if m and not pid_alive(int(m.group(1))):
                try:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
                except FileNotFoundError:
                    pass
    return removed


def _acquire(out: Path, overwrite: bool) -> int:
    lock = lock_path(out)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise os_error(out.parent, exc, f"cannot write {out.name} there") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            note = " (--overwrite replaces a finished beton, never one being written)" if overwrite else ""
            raise WriterError(f"{out} is being written right now by another 'ffcv-ssl write' ({holder}); wait for "
                              f"it to finish or choose another --out{note}") from None
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise os_error(out.parent, exc, f"cannot lock {lock.name}") from None
            from ffcv_ssl.console import warning_line

            warning_line(f"{out.parent}: this file system cannot lock files ({exc.strerror}); a concurrent write "
                         f"to {out.name} would not be detected")
            break
        # the previous holder unlinks the lock file when done: make sure we locked the file that is there now
        try:
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    return fd


@contextmanager
def claim_output(out: Path, overwrite: bool) -> Iterator[Path]:
    """Hold ``out`` for one write: checks, exclusive lock, stale temporaries removed, orphan manifest reported.

    Re-entrant within a process (``write_dataset`` claims, then ``write_split`` claims again).
    """
    from ffcv_ssl.console import warning_line

    out = check_output_path(Path(out), overwrite)
    key = out.resolve()
    if key in _HELD:
        yield out
        return
    fd = _acquire(out, overwrite)
    _HELD[key] = fd
    try:
        check_output_path(out, overwrite)           # another writer may have finished while we waited
        removed = remove_stale_temporaries(out)
        if removed:
            warning_line(f"removed {len(removed)} temporary file(s) left by interrupted writes to {out}: "
                         f"{', '.join(p.name for p in removed)}")
        manifest = manifest_path(out)
        if manifest.exists() and not out.exists():
            warning_line(f"{manifest} is an orphan manifest (its beton {out.name} is missing, e.g. a write killed "
                         "between its two renames, or a deleted beton); this write replaces it")
        yield out
    finally:
        del _HELD[key]
        try:
            lock_path(out).unlink()          # while still locked: a waiting writer's inode check sees it
        except FileNotFoundError:
            pass
        os.close(fd)
