"""A multi-tenant chat — gateway (HTTP + WebSocket) → message service (TCP) → Redis pub/sub —
shipped as a system under test, with switchable defects. Reference: ``docs/sample.md``.
"""

from .config import Bug, BugsUpdate, ChatConfig, Defects
from .gateway import Gateway
from .message_service import MessageService
from .system import ChatSystem

__all__ = ["Bug", "BugsUpdate", "ChatConfig", "ChatSystem", "Defects", "Gateway", "MessageService"]
