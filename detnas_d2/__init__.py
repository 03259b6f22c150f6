"""detnas_d2: search detection systems on detectron2.

Importing the package registers its detectron2 components (backbones, necks, mappers, meta-architectures) with
detectron2, as soon as detectron2 itself is imported (see ``detnas_d2.register``); datasets are registered by
``detnas_d2.data.datasets.register_from_config`` (which the command lines call), so importing looks at no dataset
folder. Without detectron2 (e.g. a GPU box used only for measurements), the pure-PyTorch and plain-Python parts
(``detnas_d2.nn``, ``detnas_d2.space``, the analytical ``detnas_d2.cost`` model) import and run; nothing is
registered then.
"""

from .register import register_when_detectron2_loads

__version__ = "0.1.0"

HAS_DETECTRON2 = register_when_detectron2_loads()
