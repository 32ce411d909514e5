"""One writer per store and per job directory: an exclusive lock file naming its holder.

``DIR/.engine.lock`` is locked with ``flock`` for as long as a writer runs and holds the writer's pid,
host, command and start time. The kernel releases the lock when its process dies in any way (kill -9
included), so a lock file left by a dead process is stale by construction: the next writer takes it
over (and says so in the log). A second writer while the first runs waits up to ``wait`` seconds, then
stops with :class:`LockedError` naming the holder. Where the file system refuses ``flock``, the pid
and host in the file decide: a holder on this host whose pid is gone is stale.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from engine.core.errors import EngineError

log = logging.getLogger(__name__)

#: Name of the lock file inside a locked directory.
LOCK_NAME = ".engine.lock"


class LockedError(EngineError):
    """Another writer holds the directory; the message names it (pid, host, command, since)."""


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("since", 0))))
    return f"{holder.get('command', 'a writer')} (pid {holder.get('pid')} on {holder.get('host')}, since {since})"


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the holder named in a lock file may still run (unknown hosts count as alive)."""
    if holder.get("host") != socket.gethostname():
        return bool(holder)
    try:
        os.kill(int(holder.get("pid", 0)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


class DirectoryLock:
    """Exclusive lock on a directory for one writer (use as a context manager)."""

    def __init__(self, directory: str | Path, *, command: str, wait: float = 0.0, poll: float = 0.2) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.command = command
        self.wait = max(float(wait), 0.0)
        self.poll = poll
        self._fd: int | None = None

    def acquire(self) -> DirectoryLock:
        """Take the lock, waiting up to ``wait`` seconds; raise :class:`LockedError` naming the holder."""
        self.directory.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                got = self._try_lock(fd)
            except BaseException:
                os.close(fd)
                raise
            if got:
                self._fd = fd
                self._write_holder(fd)
                return self
            holder = _read(fd)
            os.close(fd)
            if time.monotonic() >= deadline:
                hint = (f"waited {self.wait:g} s; " if self.wait else "") + \
                    "wait for it to finish or stop it (rerun with --lock-wait SECONDS to wait)"
                raise LockedError(f"{self.directory} is in use by {_describe(holder)}; {hint}")
            time.sleep(self.poll)

    def _try_lock(self, fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            return not _alive(_read(fd))  # no flock on this file system: the pid and host decide
        previous = _read(fd)
        if previous and previous.get("pid") != os.getpid():
            log.info("%s: taking over the lock left by %s, which is no longer running", self.directory,
                     _describe(previous))
        return True

    def _write_holder(self, fd: int) -> None:
        data = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                           "since": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)

    def release(self) -> None:
        """Give the lock up (the file stays, emptied: removing it would race with the next writer)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _read(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        holder = json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def lock_holder(directory: str | Path) -> dict[str, Any]:
    """The holder recorded in ``directory``'s lock file (empty when none or released)."""
    path = Path(directory) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return {}
    try:
        return _read(fd)
    finally:
        os.close(fd)
