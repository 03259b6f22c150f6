"""Registering the package's detectron2 components (backbones, necks, mappers, meta-architectures) without making
every ``import detnas_d2.<module>`` import detectron2.

``import detnas_d2`` calls :func:`register_when_detectron2_loads`: with detectron2 already imported the components
register at once; otherwise they register right after the first ``import detectron2`` in the process, which
any use of detectron2's registries needs anyway. So ``import detnas_d2.space.backbone`` stays light, and
``import detnas_d2`` still makes every component available to detectron2 configs.
"""

import importlib.abc
import importlib.util
import sys


def register_with_detectron2() -> None:
    """Import the modules whose import registers the components with detectron2's registries (idempotent)."""
    from . import data, modeling  # noqa: F401  (registration side effects; these import detectron2)


class _RegisterAfterDetectron2(importlib.abc.MetaPathFinder):
    """Meta-path finder that lets ``detectron2`` import as usual, then calls :func:`register_with_detectron2`."""

    def __init__(self):
        self.searching = False  # True while the other finders look for the real spec

    def find_spec(self, name, path=None, target=None):
        """The real spec of ``detectron2``, its loader wrapped to register after it; None for other names."""
        if name != "detectron2" or self.searching:
            return None
        self.searching = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.searching = False
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader, self)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the real loader of ``detectron2`` (put back on the module), then registers the components once."""

    def __init__(self, loader, finder: _RegisterAfterDetectron2):
        self.loader, self.finder = loader, finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        if self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)
        module.__spec__.loader = module.__loader__ = self.loader
        self.loader.exec_module(module)
        register_with_detectron2()


def register_when_detectron2_loads() -> bool:
    """Register now if detectron2 is imported, else once it is; False if detectron2 is not installed."""
    if "detectron2" in sys.modules:
        register_with_detectron2()
        return True
    try:
        installed = importlib.util.find_spec("detectron2") is not None
    except ImportError:  # a finder that refuses detectron2
        installed = False
    if installed and not any(isinstance(finder, _RegisterAfterDetectron2) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterDetectron2())
    return installed
