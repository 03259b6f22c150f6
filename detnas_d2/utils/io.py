"""Atomic file and folder writes: a kill never leaves a half-written file or a partly filled folder behind.

Data goes to a temporary file (or folder) in the same directory and is then renamed over the target
(``os.replace`` is atomic on POSIX and Windows).
"""

import contextlib
import os
import shutil
import tempfile
from typing import Iterator, Union


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
