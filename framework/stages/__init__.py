"""The built-in stage kinds, one module each, and the built-in targets (:mod:`framework.stages.targets`).

Importing the package imports every module in it: a stage module registers its stage kind (with the recipe
sections it owns and the plugin kinds it calls), so a new built-in stage kind is one new module here plus its
conf group; the targets module comes last because a target may only name registered stage kinds.
"""

from __future__ import annotations

import importlib
import pkgutil

TARGETS_MODULE = "targets"

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != TARGETS_MODULE:
        importlib.import_module(f"{__name__}.{_module.name}")
importlib.import_module(f"{__name__}.{TARGETS_MODULE}")
