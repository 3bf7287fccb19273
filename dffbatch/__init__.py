"""dffbatch: depth from focus for whole directories of focus stacks.

Library use::

    import dffbatch
    result = dffbatch.depth_from_focus(frames, measure="sml", window=9)
    result.depth, result.confidence, result.allfocus

The package, by concern (``docs/architecture.md``):

=================  ===========================================================================
``core``           the library call: validate, plan, stream the frames, post stages, result
``stages/``        what a stack flows through: read, align, measure, depth, composite,
                   fusion, refine (post, solve, sgm), write; the stage interface and the plan
``batch/``         configs, discovery, jobs, the runner, scheduling (local, Dask), run store,
                   first-run compile
``report/``        per-job views, plots, the run's summary.csv and index.html
``truth/``         synthetic stacks with ground truth, metrics, ``dffbatch eval``
``params``,        the defaults every layer reads; what the machine has
``sysinfo``
=================  ===========================================================================

Modules of the flat layout before the subpackages (``dffbatch.measure``,
``dffbatch.synth``, ...) still import, as the same module objects (:mod:`dffbatch._moved`).
"""
__version__ = "0.1.0"
__all__ = ["depth_from_focus", "DFFResult", "DEFAULTS", "focus_measure", "MEASURES", "__version__"]

from . import _moved  # noqa: E402  (old module paths: a finder, no imports of the modules)

_moved.install(__name__)

_LAZY = {"depth_from_focus": "core", "DFFResult": "core", "DEFAULTS": "params",
         "focus_measure": "stages.measure", "MEASURES": "params"}


def __getattr__(name):  # the kernels (and Numba) load on first use, not on ``import dffbatch``
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _moved.MOVED:  # ``dffbatch.measure`` as an attribute, as before
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'dffbatch' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
