"""One writer per run folder: a lock that a training holds for as long as it runs.

The lock is the operating system's (`fcntl.flock` on RUN_DIR/.lock; `msvcrt.locking` on
Windows), so it is released when the process ends, however it ends: a crash or `kill -9` never
leaves a stale lock behind. The file names its holder, for the message a second training gets.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

__all__ = ["RunFolderBusy", "hold_run_folder"]

LOCK_NAME = ".lock"


class RunFolderBusy(RuntimeError):
    """Another process is training into this run folder."""


def _try_lock(handle) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def hold_run_folder(run_dir: str | Path):
    """Hold `run_dir`'s lock inside the block (the folder must exist).

    Raises:
        RunFolderBusy: another process holds it; the message names that process and the fix.
    """
    path = Path(run_dir) / LOCK_NAME
    handle = open(path, "a+")  # noqa: SIM115 - held open for the whole block
    try:
        if not _try_lock(handle):
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunFolderBusy(
                f"{run_dir} is in use by another training ({holder}); wait until it ends, or "
                "train into another folder (--out)"
            )
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"process {os.getpid()} on {socket.gethostname()}, since {started}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
    finally:
        handle.close()  # closing the file releases the lock
