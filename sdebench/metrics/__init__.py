"""Metrics: the registry (:mod:`sdebench.metrics.registry`) and the families that register into it."""

from . import registry  # noqa: F401  (first: it loads the families in registry order)
