"""JSONPath as Chaos Toolkit's ``jsonpath`` tolerance reads it (the ``jsonpath2`` dialect)."""

from __future__ import annotations

import contextlib
import io
from typing import Any

MAX_PATH_CHARS = 1000


def parse_jsonpath(path: str) -> Any:
    """The compiled path; ``ValueError`` naming the problem when it is not one."""
    text = path.strip()
    if not text:
        raise ValueError("a JSON path cannot be empty")
    if len(text) > MAX_PATH_CHARS:
        raise ValueError(f"JSON path {text[:40]!r}... is longer than {MAX_PATH_CHARS} characters")
    from jsonpath2.path import Path

    try:
        # The parser also prints each syntax error to stderr; the error raised says it.
        with contextlib.redirect_stderr(io.StringIO()):
            parsed = Path.parse_str(text)
    except RecursionError:
        raise ValueError(f"JSON path {text!r} is nested too deeply") from None
    except Exception as exc:  # the parser raises assorted errors on bad input
        raise ValueError(f"invalid JSON path {text!r}: {exc or type(exc).__name__}") from None
    step = _backward_step(parsed.root_node)
    if step is not None:
        # jsonpath2 finds nothing for a negative step (RFC 9535 walks the array backwards)
        # and raises on matching a zero one: refused here rather than judged wrongly later.
        raise ValueError(
            f"invalid JSON path {text!r}: a slice step of {step} is not supported "
            "(a step is 1 or more)"
        )
    return parsed


def _backward_step(root: object) -> int | None:
    """The first slice step below 1 anywhere in a parsed path (filters included), if any."""
    from jsonpath2.subscripts.arrayslice import ArraySliceSubscript

    todo, seen = [root], set()
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ArraySliceSubscript):
            if node.step is not None and node.step < 1:
                return int(node.step)
            continue
        if isinstance(node, list | tuple):
            todo.extend(node)
        elif hasattr(node, "__dict__"):
            todo.extend(v for v in vars(node).values() if not isinstance(v, str | int | float))
    return None


def jsonpath_values(path: str, document: Any) -> list[Any]:
    """Every value ``path`` finds in ``document``, in document order."""
    return [m.current_value for m in parse_jsonpath(path).match(document)]
