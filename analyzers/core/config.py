"""The analyses' configuration (defined in :mod:`schemas.analysis`: it travels in the log)."""

from schemas.analysis import PROCESSING_FIELDS, AnalyzerConfig, HealthThresholds, SloSpec

__all__ = ["PROCESSING_FIELDS", "AnalyzerConfig", "HealthThresholds", "SloSpec"]
