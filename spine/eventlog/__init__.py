"""The event log: where every event goes (sinks), how it is framed on Kafka, and how it is read."""

from spine.eventlog.sink import EncodedEventSink, EventSink, MemorySink

__all__ = ["EncodedEventSink", "EventSink", "MemorySink"]
