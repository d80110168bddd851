"""The pure analysis core: typed folds over event sequences, no I/O, an injectable clock.

Live workers, replay and tests all feed :class:`analyzers.core.engine.Analyzer`, so every
figure is computed by the same code whichever way the events arrive.
"""

from analyzers.core.config import AnalyzerConfig, HealthThresholds, SloSpec
from analyzers.core.engine import Analyzer, AnalyzerStats

__all__ = ["Analyzer", "AnalyzerConfig", "AnalyzerStats", "HealthThresholds", "SloSpec"]
