"""dffbatch: depth from focus for whole directories of focus stacks.

Library use::

    import dffbatch
    result = dffbatch.depth_from_focus(frames, measure="sml", window=9)
    result.depth, result.confidence, result.allfocus
"""
from .core import DEFAULTS, DFFResult, depth_from_focus
from .measure import MEASURES, focus_measure

__version__ = "0.1.0"
__all__ = ["depth_from_focus", "DFFResult", "DEFAULTS", "focus_measure", "MEASURES", "__version__"]
