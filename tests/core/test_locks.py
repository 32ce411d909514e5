"""One writer per directory: a live holder blocks (with a message naming it), a dead one's lock is taken over."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.core.locks import LOCK_NAME, DirectoryLock, LockedError, lock_holder

HOLD = """
import sys, time
from engine.core.locks import DirectoryLock
with DirectoryLock(sys.argv[1], command="engine test-holder"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(directory: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory), str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _stop(proc: subprocess.Popen[str], *, kill: bool = True) -> None:
    if kill:
        proc.kill()
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()


def test_a_live_holder_blocks_with_a_message_naming_it(tmp_path: Path) -> None:
    proc = _holder(tmp_path, 30)
    try:
        with pytest.raises(LockedError) as info:
            DirectoryLock(tmp_path, command="engine ingest").acquire()
        message = str(info.value)
        assert f"pid {proc.pid} on {socket.gethostname()}" in message and "engine test-holder" in message
        assert lock_holder(tmp_path)["pid"] == proc.pid
    finally:
        _stop(proc)


def test_a_second_writer_waits_for_the_first(tmp_path: Path) -> None:
    proc = _holder(tmp_path, 1.0)
    start = time.monotonic()
    with DirectoryLock(tmp_path, command="engine ingest", wait=30, poll=0.05):
        assert lock_holder(tmp_path)["pid"] == os.getpid()
    assert time.monotonic() - start < 20
    _stop(proc, kill=False)
    assert lock_holder(tmp_path) == {}  # released: emptied


def test_a_waiting_writer_gives_up_after_its_timeout(tmp_path: Path) -> None:
    proc = _holder(tmp_path, 30)
    try:
        start = time.monotonic()
        with pytest.raises(LockedError, match=r"waited 0\.5 s"):
            DirectoryLock(tmp_path, command="engine ingest", wait=0.5, poll=0.05).acquire()
        assert time.monotonic() - start < 5
    finally:
        _stop(proc)


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    proc = _holder(tmp_path, 60)
    _stop(proc)  # SIGKILL: no cleanup, the lock file still names it
    assert lock_holder(tmp_path)["pid"] == proc.pid
    with caplog.at_level(logging.INFO, logger="engine.core.locks"), DirectoryLock(tmp_path, command="engine ingest"):
        assert lock_holder(tmp_path)["pid"] == os.getpid()
    assert f"pid {proc.pid}" in caplog.text and "no longer running" in caplog.text


def test_a_stale_lock_file_from_a_dead_pid_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                                  "command": "engine annotate", "since": time.time()}))
    with DirectoryLock(tmp_path, command="engine annotate"):
        assert lock_holder(tmp_path)["pid"] == os.getpid()


def test_one_process_cannot_hold_it_twice(tmp_path: Path) -> None:
    with DirectoryLock(tmp_path, command="first"), pytest.raises(LockedError, match=f"pid {os.getpid()}"):
        DirectoryLock(tmp_path, command="second").acquire()
