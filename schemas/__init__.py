"""Versioned pydantic models of every event, experiment and result Aftershock records.

Import events from :mod:`schemas.events`; the ``Event`` union is discriminated on ``kind``.
"""

from schemas.events import SCHEMA_VERSION, Event, EventAdapter, parse_event

__all__ = ["SCHEMA_VERSION", "Event", "EventAdapter", "parse_event"]
