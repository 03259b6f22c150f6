"""Atomic file writes: a kill never leaves a half-written file behind.

Data goes to a temporary file in the same directory, is fsynced and then renamed over the target (``os.replace``
is atomic on POSIX and Windows).
"""
import os
import tempfile
from typing import Union


def atomic_write(path: str, data: Union[str, bytes]) -> None:
    """Replace ``path`` by ``data`` (text is UTF-8 encoded) so that readers see the old or the new file, never a mix."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=".tmp_", suffix="_" + os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o644)  # mkstemp creates 0600; give the usual permissions of a written file
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
