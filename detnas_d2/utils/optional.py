"""Optional dependencies (onnx, onnxruntime): imported only where used, failing with the package's name."""

import importlib
from types import ModuleType


class MissingDependencyError(ImportError):
    """An optional package that a requested feature needs is not installed."""


def require(package: str, purpose: str) -> ModuleType:
    """Import ``package`` or fail naming it and ``purpose``, so the core plugin never needs it at import time."""
    try:
        return importlib.import_module(package)
    except ImportError as error:
        raise MissingDependencyError(
            f"{purpose} needs the package {package!r}, which cannot be imported ({error}); install it with "
            f"`pip install {package}` (its version is pinned in requirements.txt)"
        ) from None
