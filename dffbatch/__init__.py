"""dffbatch: depth from focus for whole directories of focus stacks.

Library use::

    import dffbatch
    result = dffbatch.depth_from_focus(frames, measure="sml", window=9)
    result.depth, result.confidence, result.allfocus
"""
__version__ = "0.1.0"
__all__ = ["depth_from_focus", "DFFResult", "DEFAULTS", "focus_measure", "MEASURES", "__version__"]

_LAZY = {"depth_from_focus": "core", "DFFResult": "core", "DEFAULTS": "params",
         "focus_measure": "measure", "MEASURES": "params"}


def __getattr__(name):  # the kernels (and Numba) load on first use, not on ``import dffbatch``
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dffbatch' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
