"""detnas_d2: search detection systems on detectron2.

Importing the package registers its detectron2 components (backbones, necks, mappers, meta-architectures) when
detectron2 is installed; datasets are registered by ``detnas_d2.data.datasets.register_from_config`` (which the
command lines call), so importing looks at no dataset folder. Without detectron2 (e.g. a GPU box used only for
measurements), the pure-PyTorch and plain-Python parts (``detnas_d2.nn``, ``detnas_d2.space``, the analytical
``detnas_d2.cost`` model) still import; nothing is registered then.
"""
__version__ = "0.1.0"

try:
    import detectron2  # noqa: F401
except ImportError:  # pragma: no cover - exercised only on machines without detectron2
    HAS_DETECTRON2 = False
else:
    HAS_DETECTRON2 = True
    from . import data, modeling  # noqa: F401  (registration side effects)
