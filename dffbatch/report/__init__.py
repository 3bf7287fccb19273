"""What a person looks at: per job the small images of the report (``views``) and the
plots (``plots``); per run ``summary.csv`` and ``index.html`` (``page``, with ``assets/``).

``write_summary``, ``write_report`` and ``rank_sweeps`` import from here, as they did
from the old ``dffbatch.report`` module.
"""
__all__ = ["write_summary", "write_report", "rank_sweeps"]


def __getattr__(name):
    if name in __all__:
        from . import page
        return getattr(page, name)
    raise AttributeError(f"module 'dffbatch.report' has no attribute {name!r}")
