"""Searchable parts: the backbone, the NAS-FPN neck and the augmentation policy, one registration each.

A part (:class:`~detnas_d2.parts.base.SearchablePart`) knows its search space, how to find its one-shot module in
a built model and select a path on it, how to write a fixed architecture into a config, how to cut the inherited
weights out of a supernet state, and its cost functions. ``SEARCH.SPACE`` names parts by their ``name``.

Adding a part is one new file in this folder; every module here is imported below, so its registration runs::

    # detnas_d2/parts/head.py
    from .base import SEARCHABLE_PART_REGISTRY, SearchablePart

    @SEARCHABLE_PART_REGISTRY.register()
    class HeadPart(SearchablePart):
        name = "head"
        evaluators = ("one_shot",)
        def find(self, model): ...            # the model's module of this part, or None
        def model_space(self, module): ...    # its SearchSpace
        def config_values(self, arch): ...    # {"MODEL.X.ARCH": ...}: the fixed architecture in config keys
"""

import importlib
import pkgutil

from .base import (  # noqa: F401
    SEARCHABLE_PART_REGISTRY,
    SearchablePart,
    get_part,
    parse_space,
    part_archs,
    part_names,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
