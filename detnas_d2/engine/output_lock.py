"""An exclusive lock on a run's OUTPUT_DIR, so two runs never write into one folder at the same time.

The lock is ``fcntl.flock`` on ``OUTPUT_DIR/.detnas_d2.lock``: the kernel releases it when the holding process
exits in any way (``kill -9`` included), so a lock file left behind by a dead process never blocks. The holder
writes its pid, host and start time into the file; a second run reads them for its error message. The file
itself stays in the folder (deleting it would let two processes lock two different files of the same name).
"""
import datetime
import errno
import fcntl
import os
import socket

LOCK_FILE = ".detnas_d2.lock"


class OutputDirLockedError(RuntimeError):
    """Another live process holds the lock of the output folder."""


def lock_path(output_dir: str) -> str:
    """The lock file of ``output_dir``."""
    return os.path.join(output_dir, LOCK_FILE)


def _holder_description(path: str) -> str:
    """What the lock file says about its holder, e.g. ``pid 123 on host h (since ...)``."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read().strip()
    except OSError:
        text = ""
    return text or "a process that has not written its pid yet"


class OutputDirLock:
    """Context manager holding the exclusive lock of ``output_dir`` (created if missing) until exit."""

    def __init__(self, output_dir: str):
        self.output_dir = os.path.abspath(output_dir)
        self.path = lock_path(self.output_dir)
        self._fd = None

    def acquire(self) -> None:
        """Take the lock without waiting; ``OutputDirLockedError`` names the folder and the holder if it is taken."""
        os.makedirs(self.output_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            raise OutputDirLockedError(
                f"OUTPUT_DIR {self.output_dir} is in use by another run: {_holder_description(self.path)} "
                f"(lock file {self.path}). Wait for that run to end, stop it, or choose another OUTPUT_DIR"
            ) from None
        self._fd = fd
        self._write_holder()

    def _write_holder(self) -> None:
        """Record this process in the lock file for the error message of a second run."""
        since = datetime.datetime.now().isoformat(timespec="seconds")
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"pid {os.getpid()} on host {socket.gethostname()} (since {since})\n".encode())

    def release(self) -> None:
        """Give the lock back (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutputDirLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
