"""Atomic file and folder writes: a kill or a full disk never leaves a half-written file or a partly filled folder
behind.

Data goes to a temporary file (or folder) in the same directory and is then renamed over the target
(``os.replace`` is atomic on POSIX and Windows). A write that does not fit on its disk raises
:class:`DiskFullError`, naming the folder and the bytes it needs.
"""

import contextlib
import errno
import logging
import os
import shutil
import tempfile
from typing import Iterator, Union

#: errno values of a write that found its disk (or quota) full
FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A write that does not fit on its disk; the message names the folder, the bytes needed and the bytes free."""

    def __init__(self, path: str, needed: int):
        folder = os.path.dirname(os.path.abspath(path))
        free = shutil.disk_usage(folder).free
        super().__init__(
            errno.ENOSPC,
            f"no space left in {folder} to write {os.path.basename(path)}: it needs {needed} bytes, {free} are free. "
            "Free some space (or choose another OUTPUT_DIR) and run again with --resume",
        )
        # the log file on a full disk cannot be written either: no "--- Logging error ---" block per message
        logging.raiseExceptions = False

    def __str__(self) -> str:
        return self.strerror


def full_disk_cause(err: BaseException) -> DiskFullError | None:
    """The :class:`DiskFullError` that ``err`` is or that it happened while handling, if any."""
    while err is not None:
        if isinstance(err, DiskFullError):
            return err
        err = err.__cause__ or err.__context__
    return None


def atomic_write(path: str, data: Union[str, bytes, memoryview]) -> None:
    """Replace ``path`` by ``data`` (text is UTF-8 encoded) so that readers see the old or the new file, never a mix;
    raise :class:`DiskFullError` (leaving ``path`` as it was) when the disk has no room for it."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    directory = os.path.dirname(os.path.abspath(path))
    if shutil.disk_usage(directory).free < len(data):
        raise DiskFullError(path, len(data))
    fd, tmp_path = tempfile.mkstemp(prefix=".tmp_", suffix="_" + os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o644)  # mkstemp creates 0600; give the usual permissions of a written file
        os.replace(tmp_path, path)
    except BaseException as err:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        if isinstance(err, OSError) and err.errno in FULL_DISK_ERRNOS and not isinstance(err, DiskFullError):
            raise DiskFullError(path, len(data)) from err
        raise


@contextlib.contextmanager
def atomic_folder(path: str) -> Iterator[str]:
    """Yield a new temporary folder next to ``path``; when the block succeeds it is renamed to ``path`` (which must
    not exist), so readers see no folder or a complete one. On an exception the temporary folder is removed."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp_path = tempfile.mkdtemp(prefix=".tmp_", suffix="_" + os.path.basename(path), dir=directory)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o755)  # mkdtemp creates 0700; give the usual permissions of a created folder
        os.replace(tmp_path, path)
    except BaseException:
        shutil.rmtree(tmp_path, ignore_errors=True)
        raise
