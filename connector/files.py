"""Local files that hold secrets or customer data: private files and folders, and their locks.

Tokens, the poll state (its outbox holds records), JSON lines sinks and the Logfile are
created readable by their owner only: files 0600, in folders created 0700. Existing
files and folders keep the mode their owner gave them (a folder such as ``~/.config``
is not ours to change); a file created by sagesql never starts readable by others, and
since SQLite gives its ``-wal`` and ``-shm`` files the database file's mode, they follow.

Locks (:func:`held`) never follow a symbolic link at the lock path (it could point at any
file, which the lock would then create or truncate), and a lock held by another process
is reported at once with who holds it (:func:`holders`, from ``/proc/locks`` on Linux).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from filelock import FileLock, Timeout

from sagesql.errors import ConfigurationError, Error

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | Path) -> Path:
    """The folder, every missing part of it created 0700 (existing ones are left as they are)."""
    folder = Path(path).expanduser()
    missing: list[Path] = []
    at = folder
    while not at.exists() and at != at.parent:
        missing.append(at)
        at = at.parent
    for part in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            part.mkdir(mode=DIR_MODE)
        # mkdir's mode passes through the umask: a umask can only take bits away.
    return folder


def private_opener(path: str, flags: int) -> int:
    """An ``opener`` for :func:`open`: a file it creates is 0600 (the umask may only narrow it)."""
    return os.open(path, flags, FILE_MODE)


def open_private(path: str | Path, mode: str = "a", *, encoding: str = "utf-8") -> IO[str]:
    """A text file opened for writing; created 0600 (its folders 0700) when it is new."""
    target = Path(path).expanduser()
    private_dir(target.parent)
    return open(target, mode, encoding=encoding, opener=private_opener)


def create_private(path: str | Path) -> Path:
    """The file, created empty and 0600 (its folders 0700) unless it exists."""
    target = Path(path).expanduser()
    private_dir(target.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    return target


def write_private(path: str | Path, text: str) -> None:
    """Replace the file's content at once (temporary file, fsync, rename), mode 0600."""
    target = Path(path).expanduser()
    private_dir(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)  # 0600 already
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- locks ------------------------------------------------------------------------------------


def holders(*paths: str | Path) -> list[str]:
    """The other processes holding a lock on any of these files, as ``pid N (name)``;
    writers first. Empty where it cannot be known (not Linux, no /proc)."""
    wanted: set[tuple[int, int]] = set()
    for path in paths:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            wanted.add((st.st_dev, st.st_ino))
    if not wanted:
        return []
    try:
        lines = Path("/proc/locks").read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return []
    found: dict[int, bool] = {}  # pid -> holds a write lock
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        try:
            kind, pid, where = fields[3], int(fields[4]), fields[5]
            major, minor, inode = where.split(":")
            device = os.makedev(int(major, 16), int(minor, 16))
            key = (device, int(inode))
        except (IndexError, ValueError):
            continue
        if key in wanted and pid > 0 and pid != os.getpid():
            found[pid] = found.get(pid, False) or kind == "WRITE"
    ordered = sorted(found, key=lambda pid: (not found[pid], pid))
    return [f"pid {pid} ({_process_name(pid)})" for pid in ordered]


def _process_name(pid: int) -> str:
    """The process's name only: its command line may carry secrets (a -c connection)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "ended"


def held_by(*paths: str | Path) -> str:
    """``held by pid N (name)``, or ``held by another process`` when nobody can be named."""
    who = holders(*paths)
    return "held by " + (", ".join(who[:3]) if who else "another process")


@contextlib.contextmanager
def held(
    lock_path: str | Path,
    *,
    timeout: float,
    busy: Callable[[str], Error],
    what: str = "lock file",
) -> Iterator[None]:
    """Hold the OS lock at ``lock_path`` (created 0600 in a 0700 folder), waiting up to
    ``timeout`` seconds; ``busy(held_by)`` is the error when another process keeps it."""
    path = Path(lock_path).expanduser()
    private_dir(path.parent)
    if path.is_symlink():
        raise ConfigurationError(
            f"the {what} {path} is a symbolic link, which sagesql never follows",
            hint=f"remove it ('rm {path}'); sagesql creates a plain file there",
        )
    lock = FileLock(str(path), timeout=timeout, mode=FILE_MODE)
    try:
        lock.acquire()
    except Timeout:
        raise busy(held_by(path)) from None
    except OSError as exc:  # a link made meanwhile (O_NOFOLLOW), a folder, no permission
        raise ConfigurationError(
            f"cannot use the {what} {path}: {exc.strerror or type(exc).__name__}",
            hint="make it a plain file you can write, or remove it",
        ) from None
    try:
        yield
    finally:
        lock.release()


def is_free(lock_path: str | Path) -> bool:
    """Whether nobody holds the lock at ``lock_path`` right now."""
    path = Path(lock_path).expanduser()
    if path.is_symlink():
        return False
    lock = FileLock(str(path), mode=FILE_MODE)
    try:
        lock.acquire(timeout=0)
    except (Timeout, OSError):
        return False
    lock.release()
    return True
