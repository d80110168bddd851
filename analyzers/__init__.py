"""Resilience analysis: a pure core folding over events, and the adapters that feed it."""
