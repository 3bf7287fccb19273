"""Old module paths: ``import dffbatch.measure`` gives ``dffbatch.stages.measure``.

The package was one flat folder until the subpackages; user code and notebooks import
``dffbatch.synth``, ``dffbatch.metrics``, ``dffbatch.measure`` and the like. A finder
on ``sys.meta_path`` answers those names with the module at its new path, the same
object (so patching one patches the other), imported only when asked for.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

#: old name -> new path, relative to the package
MOVED = {
    **{m: f"stages.{m}" for m in ("kernels", "read", "hyperstack", "align", "measure", "fused", "depth",
                                  "composite", "fusion", "post", "solve", "refine", "sgm", "write")},
    **{m: f"batch.{m}" for m in ("config", "discover", "jobs", "runner", "schedule", "distributed", "store",
                                 "warmup")},
    "views": "report.views", "plots": "report.plots",
    **{m: f"truth.{m}" for m in ("synth", "synth_cli", "metrics", "evaluate")},
}


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, package):
        self.package = package

    def find_spec(self, fullname, path=None, target=None):
        pkg, _, name = fullname.rpartition(".")
        if pkg == self.package and name in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):  # the module at its new path, which the import system then files under the old
        module = importlib.import_module(f"{self.package}.{MOVED[spec.name.rpartition('.')[2]]}")
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module):
        # the import system set ``__spec__`` to the old name's: give the module back its own
        module.__spec__ = module.__spec__.loader_state


def install(package: str) -> None:
    if not any(isinstance(f, _Finder) and f.package == package for f in sys.meta_path):
        sys.meta_path.append(_Finder(package))
