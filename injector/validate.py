"""Validate an experiment file and explain every problem: path in the file, line, message.

Schema errors come from the pydantic models in :mod:`schemas.experiment`; once the file fits the
schema, cross-reference checks run (unknown proxies, duplicate fault ids, overlapping outages,
``ref`` to undefined activities, ``chaostoxi`` calls with wrong arguments).
"""

from __future__ import annotations

import difflib
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from injector.chaostoxi import check_call
from injector.document import Document, PathKey, Problem, read_document, render_path
from injector.errors import ExperimentInvalid
from schemas.experiment import Experiment, parse_duration_s
from schemas.targets import TargetGraph

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path


@cache
def _vocabulary() -> tuple[str, ...]:
    """Every key any experiment model accepts, for "did you mean" hints."""
    seen: set[str] = set()
    todo: list[type[BaseModel]] = [Experiment]
    done: set[type[BaseModel]] = set()
    while todo:
        model = todo.pop()
        if model in done:
            continue
        done.add(model)
        for name, f in model.model_fields.items():
            seen.add(f.alias or name)
            for arg in _model_types(f.annotation):
                todo.append(arg)
    return tuple(sorted(seen))


def _model_types(annotation: Any) -> Iterable[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in getattr(annotation, "__args__", ()) or ():
        yield from _model_types(arg)
    meta = getattr(annotation, "__metadata__", None)
    origin = getattr(annotation, "__origin__", None)
    if meta is not None and origin is not None:
        yield from _model_types(origin)


def _data_path(
    loc: tuple[str | int, ...], data: Any, *, missing_key: bool = True
) -> tuple[PathKey, bool]:
    """Map a pydantic error location onto the document, dropping union-member tags.

    Returns the path and whether the last element is a key absent from the data (so the error
    is about a missing key rather than a value)."""
    out: list[str | int] = []
    node: Any = data
    missing = False
    for n, part in enumerate(loc):
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
        if in_list or in_dict:
            out.append(part)
            node = node[part]
        elif missing_key and isinstance(node, dict) and isinstance(part, str) and n == len(loc) - 1:
            out.append(part)
            missing = True
        # else: a union tag or member name — not part of the file.
    return tuple(out), missing


def _hint(word: str) -> str:
    close = difflib.get_close_matches(word, _vocabulary(), n=1, cutoff=0.75)
    if close and close[0] == word:
        return " here (it belongs elsewhere in the file; see docs/experiment-file.md)"
    return f"; did you mean {close[0]!r}?" if close else ""


_ACTIVITY_KEYS: dict[str, str] = {
    "secrets": "'secrets' of an activity goes in its provider (provider.secrets: [scope, ...]); "
    "Chaos Toolkit ignores it on the activity itself",
    "timeout": "Chaos Toolkit accepts an activity-level 'timeout' but never enforces it: put "
    "'timeout' in the provider (http or process)",
    "dry": "Aftershock has no dry runs: remove 'dry' (rehearse with --time-scale instead)",
    "tolerance": "only probes have a tolerance: make this activity a probe, or remove it",
}
"""Chaos Toolkit keys an activity may carry that Aftershock refuses, and what to do instead."""

_PROVIDER_KEYS: dict[str, str] = {
    "func": "a control calls its module's hook functions (before_activity_control ...), not "
    "a 'func': remove 'func'",
}


def _unknown_key(last: str, parent: Any) -> str:
    if isinstance(parent, dict):
        if parent.get("type") in ("action", "probe") and last in _ACTIVITY_KEYS:
            return _ACTIVITY_KEYS[last]
        if last in _PROVIDER_KEYS and parent.get("type") == "python" and "func" in parent:
            return _PROVIDER_KEYS[last]
    return f"unknown key {last!r}{_hint(last)}"


def _parent(data: Any, path: PathKey) -> Any:
    node = data
    for part in path[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _message(err: Any, parent: Any = None) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    loc = err["loc"]
    last = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        return _unknown_key(str(last), parent)
    if kind == "missing":
        return f"missing required key {last!r}"
    if kind == "union_tag_invalid":
        tag = ctx.get("tag")
        expected = ctx.get("expected_tags", "")
        close = difflib.get_close_matches(
            str(tag), [t.strip(" '") for t in str(expected).split(",")], n=1
        )
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{ctx.get('discriminator', 'type')} {tag!r} is not one of {expected}{hint}"
    if kind == "union_tag_not_found":
        return f"missing key {ctx.get('discriminator', '')} that says which kind this is"
    msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    given = err.get("input")
    if isinstance(given, str | int | float | bool) and repr(given) not in msg:
        msg += f" (got {given!r})"
    return msg


def _schema_problems(doc: Document, exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    seen_paths: set[PathKey] = set()
    for err in exc.errors():
        path, missing = _data_path(err["loc"], doc.data, missing_key=err["type"] == "missing")
        is_key = err["type"] == "extra_forbidden"
        # A value that fits none of an untagged union's members produces one error per
        # member; one message per place is enough.
        if path in seen_paths and not (is_key or missing):
            continue
        seen_paths.add(path)
        pos = doc.position(path, key=is_key)
        problems.append(
            Problem(
                render_path(path),
                _message(err, _parent(doc.data, path)),
                pos.line if pos else None,
                pos.column if pos else None,
            )
        )
    return problems


def _dicts(value: Any) -> list[tuple[int, dict[str, Any]]]:
    return [(i, v) for i, v in enumerate(value)] if isinstance(value, list) else []


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class _Checker:
    """Cross-reference checks over the raw document. They run whether or not the schema
    validated, skipping whatever is not the right shape, so one run reports everything."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def add(self, path: PathKey, message: str) -> None:
        pos = self.doc.position(path)
        self.problems.append(
            Problem(
                render_path(path), message, pos.line if pos else None, pos.column if pos else None
            )
        )

    def run(self) -> list[Problem]:
        data = self.doc.data
        for i, ext in _dicts(data.get("extensions")):
            if isinstance(ext, dict) and ext.get("name") == "aftershock":
                self.section(("extensions", i), ext)
        self.activities(data)
        return self.problems

    def section(self, at: PathKey, s: dict[str, Any]) -> None:
        raw_targets = [t for _, t in _dicts(s.get("targets")) if isinstance(t, dict)]
        try:
            TargetGraph.model_validate({"targets": raw_targets})
        except ValidationError as exc:
            for err in exc.errors():
                if err["loc"] == ():  # graph-level; per-target errors come from the schema
                    self.add((*at, "targets"), _message(err))
        targets = {n for t in raw_targets if (n := _s(t.get("name")))}
        proxies = sorted({p for t in raw_targets if (p := _s(t.get("proxy")))})
        for key in ("load", "slos", "safeguards"):
            for i, item in _dicts(s.get(key)):
                name = _s(item.get("target")) if isinstance(item, dict) else None
                if name is not None and name not in targets:
                    self.add((*at, key, i, "target"), self._unknown("target", name, targets))
        first_index: dict[str, int] = {}
        downs: list[tuple[int, str, str, float, float]] = []
        for i, f in _dicts(s.get("faults")):
            if not isinstance(f, dict):
                continue
            fid, proxy = _s(f.get("id")), _s(f.get("proxy"))
            if fid is not None and fid in first_index:
                self.add(
                    (*at, "faults", i, "id"),
                    f"duplicate fault id {fid!r} (also at faults[{first_index[fid]}]); "
                    "fault ids name toxics and must be unique",
                )
            if fid is not None:
                first_index.setdefault(fid, i)
            if proxy is not None and proxy not in proxies:
                if proxies:
                    msg = self._unknown("proxy", proxy, set(proxies))
                    msg += " (proxies are declared by the targets' 'proxy' key)"
                else:
                    msg = (
                        f"unknown proxy {proxy!r}: no target declares a proxy; give the target "
                        "this fault goes on a 'proxy' name (and a 'listen' address)"
                    )
                self.add((*at, "faults", i, "proxy"), msg)
            if f.get("down") is True and proxy is not None:
                try:
                    start_s = parse_duration_s(f.get("at"))
                    end_s = start_s + parse_duration_s(f.get("duration"))
                except ValueError:
                    continue
                downs.append((i, fid or f"faults[{i}]", proxy, start_s, end_s))
        for k, first in enumerate(downs):
            for second in downs[k + 1 :]:
                a_id, a_proxy, a_start, a_end = first[1:]
                b_id, b_proxy, b_start, b_end = second[1:]
                if a_proxy == b_proxy and a_start < b_end and b_start < a_end:
                    self.add(
                        (*at, "faults", second[0], "at"),
                        f"outage {b_id!r} overlaps outage {a_id!r} on proxy {a_proxy!r}; a "
                        "proxy can only be down once at a time",
                    )

    @staticmethod
    def _unknown(what: str, name: str, known: set[str]) -> str:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(sorted(known)) or "none"
        return f"unknown {what} {name!r} (known: {listing}){hint}"

    def activities(self, data: dict[str, Any]) -> None:
        defined: set[str] = set()
        groups: list[tuple[PathKey, Any]] = []
        ssh = data.get("steady-state-hypothesis")
        if isinstance(ssh, dict):
            groups.append((("steady-state-hypothesis", "probes"), ssh.get("probes")))
        groups.append((("method",), data.get("method")))
        groups.append((("rollbacks",), data.get("rollbacks")))
        for at, items in groups:
            for i, act in _dicts(items):
                if not isinstance(act, dict):
                    continue
                ref = _s(act.get("ref"))
                if ref is not None:
                    if ref not in defined:
                        listing = f" (defined: {', '.join(sorted(defined))})" if defined else ""
                        self.add(
                            (*at, i, "ref"),
                            f"ref {ref!r} names no activity defined before it{listing}",
                        )
                    continue
                if (name := _s(act.get("name"))) is not None:
                    defined.add(name)
                prov = act.get("provider")
                if isinstance(prov, dict) and prov.get("type") == "python":
                    module, func = _s(prov.get("module")), _s(prov.get("func"))
                    args = prov.get("arguments") or {}
                    if module and func and isinstance(args, dict):
                        for sub, msg in check_call(module, func, args):
                            self.add((*at, i, "provider", *sub), msg)


def check_document(doc: Document) -> tuple[Experiment | None, list[Problem]]:
    """Validate a parsed document; returns the experiment (if valid) and every problem."""
    if doc.problems and doc.data is None:
        return None, list(doc.problems)
    problems = list(doc.problems)
    if not isinstance(doc.data, dict):
        pos = doc.position(())
        problems.append(
            Problem(
                "",
                "an experiment file must be a mapping (title, method, ...)",
                pos.line if pos else None,
                pos.column if pos else None,
            )
        )
        return None, problems
    exp: Experiment | None = None
    try:
        exp = Experiment.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(_schema_problems(doc, exc))
    problems.extend(_Checker(doc).run())
    return (exp if not problems else None), problems


def check_file(path: Path) -> tuple[Experiment | None, list[Problem]]:
    return check_document(read_document(path))


def load_experiment(path: Path) -> Experiment:
    """Load and validate; raises :class:`ExperimentInvalid` listing every problem."""
    exp, problems = check_file(path)
    if exp is None or problems:
        raise ExperimentInvalid(str(path), problems)
    return exp
