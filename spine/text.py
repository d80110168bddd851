"""Text UTF-8 cannot hold. A JSON body may escape half of a surrogate pair (``"\\ud800"``);
Python decodes it to a lone surrogate, which no UTF-8 encoder writes. Every place that writes
such text out (a journal, a span file) or must read it as Go does (the fault proxy's API)
replaces it with U+FFFD, as a JSON decoder that checks its input reads it."""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def utf8_safe(text: str) -> str:
    """``text`` with every surrogate code point as U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)
