"""Running Chaos Toolkit activities (actions and probes) and judging probe tolerances.

Providers behave as chaostoolkit-lib's: ``python`` (``chaostoxi.*`` goes to the controller
bridge, any other module is imported and its function called, with ``configuration`` and the
provider's ``secrets`` scopes when it takes them), ``http`` (output: status, headers as the
server sent them, body) and ``process`` (output: exit status, stdout, stderr). ``${name}`` in
URLs, headers, arguments, timeouts, pauses and tolerances is replaced by the configuration or
any secret, as Chaos Toolkit does (a lone ``${name}`` keeps the value's type).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import itertools
import json
import os
import re
import shutil
import string
import time
import traceback
from collections import ChainMap
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import httpx

from injector.chaostoxi import is_chaostoxi
from injector.errors import InjectorError
from injector.journal import ActivityRun
from schemas.experiment import (
    Action,
    EnvSecret,
    EnvValue,
    HttpProvider,
    JsonPathTolerance,
    Probe,
    ProcessProvider,
    PythonProvider,
    RangeTolerance,
    RegexTolerance,
)
from schemas.jsonpath import jsonpath_values

if TYPE_CHECKING:
    from collections.abc import Mapping

    from injector.chaostoxi import Bridge
    from injector.hooks import Hooks
    from schemas.experiment import ConfigValue, SecretValue, Tolerance


class ActivityFailed(InjectorError):
    """An activity could not run to completion (its run is recorded as failed)."""


# --- configuration, secrets, substitution ---------------------------------------------------


def resolve_configuration(config: Mapping[str, ConfigValue]) -> dict[str, Any]:
    """Configuration values, environment ones read now. An ``env`` value whose variable is
    unset and that has no ``default`` is an error, as in Chaos Toolkit."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if not isinstance(value, EnvValue):
            out[key] = value
            continue
        if value.key not in os.environ and "default" not in value.model_fields_set:
            raise InjectorError(
                f"configuration {key!r} reads the environment variable {value.key}, which is "
                "not set (and has no 'default')"
            )
        raw: Any = os.environ.get(value.key, value.default)
        kind = value.env_var_type
        try:
            if raw is not None and kind == "int":
                raw = int(raw)
            elif raw is not None and kind == "float":
                raw = float(raw)
            elif raw is not None and kind == "bool":
                raw = str(raw).lower() in ("1", "true", "yes", "y", "on")
            elif raw is not None and kind == "json":
                raw = json.loads(str(raw))
        except ValueError as exc:
            raise InjectorError(
                f"configuration {key!r}: {value.key}={raw!r} is not {kind}: {exc}"
            ) from None
        out[key] = raw
    return out


def resolve_secrets(secrets: Mapping[str, Mapping[str, SecretValue]]) -> dict[str, dict[str, Any]]:
    """``{scope: {name: value}}`` with environment secrets read now (they must be set)."""
    out: dict[str, dict[str, Any]] = {}
    for scope, values in secrets.items():
        resolved: dict[str, Any] = {}
        for name, value in values.items():
            if isinstance(value, EnvSecret):
                if value.key not in os.environ:
                    raise InjectorError(
                        f"secret {scope}.{name} reads the environment variable {value.key}, "
                        "which is not set"
                    )
                resolved[name] = os.environ[value.key]
            else:
                resolved[name] = value
        out[scope] = resolved
    return out


class _TypedTemplate(string.Template):
    """``$name`` / ``${name}`` as Chaos Toolkit substitutes them: a string that is only one
    ``${name}`` takes the value's type (a bare ``$name`` is always made a string); unknown
    names are left as written."""

    def typed_substitute(self, mapping: Mapping[str, Any]) -> Any:
        whole = self.pattern.fullmatch(self.template)
        if whole is not None:
            name = whole.group("braced")
            if name is not None and name in mapping:
                return mapping[name]
        return self.safe_substitute(mapping)


@dataclass(frozen=True)
class Substitution:
    configuration: dict[str, Any]
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def mapping(self) -> Mapping[str, Any]:
        # Configuration first, then every secret scope: Chaos Toolkit looks names up in one
        # chain of all of them.
        return ChainMap(self.configuration, *self.secrets.values())

    def __call__(self, value: Any) -> Any:
        return _substitute(value, self.mapping)


def _substitute(value: Any, mapping: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _TypedTemplate(value).typed_substitute(mapping) if "$" in value else value
    if isinstance(value, list | tuple):
        return [_substitute(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, mapping) for k, v in value.items()}
    return value


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass
class ActivityContext:
    configuration: dict[str, Any]
    bridge: Bridge
    time_scale: float = 1.0
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    hooks: Hooks | None = None

    @property
    def subst(self) -> Substitution:
        return Substitution(self.configuration, self.secrets)


# --- providers ------------------------------------------------------------------------------


async def _python(p: PythonProvider, ctx: ActivityContext, extra: dict[str, Any]) -> Any:
    args = {**ctx.subst(dict(p.arguments)), **extra}
    if is_chaostoxi(p.module):
        return await ctx.bridge.call(p.module, p.func, args)
    fn = getattr(importlib.import_module(p.module), p.func)
    params = inspect.signature(fn).parameters
    if p.secrets is not None and "secrets" in params:
        merged: dict[str, Any] = {}
        for scope in p.secrets:
            merged.update(ctx.secrets.get(scope, {}))
        args["secrets"] = merged
    if "configuration" in params:
        args["configuration"] = dict(ctx.configuration)
    if inspect.iscoroutinefunction(fn):
        return await fn(**args)
    return await asyncio.to_thread(fn, **args)


def _raw_headers(resp: httpx.Response) -> dict[str, str]:
    """Response headers with their names as the server sent them (httpx lower-cases the
    mapping); repeated headers are joined with ", " as requests does."""
    out: dict[str, str] = {}
    lower: dict[str, str] = {}
    for name_b, value_b in resp.headers.raw:
        name, value = name_b.decode("latin-1"), value_b.decode("latin-1")
        first = lower.setdefault(name.lower(), name)
        out[first] = f"{out[first]}, {value}" if first in out else value
    return out


def _http_timeout(value: Any) -> httpx.Timeout:
    if value is None:
        return httpx.Timeout(None)
    if isinstance(value, list | tuple) and len(value) == 2:
        return httpx.Timeout(_seconds(value[1]), connect=_seconds(value[0]))
    return httpx.Timeout(_seconds(value))


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ActivityFailed(f"timeout {value!r} is not a number of seconds")
    return float(value)


async def _http(p: HttpProvider, ctx: ActivityContext, extra: dict[str, Any]) -> dict[str, Any]:
    subst = ctx.subst
    url = str(subst(p.url))
    headers = {str(k): str(v) for k, v in subst(dict(p.headers)).items()}
    args = subst(p.arguments)
    if extra:
        args = {**(args if isinstance(args, dict) else {}), **extra}
    kwargs: dict[str, Any] = {"headers": headers}
    if p.method == "GET":
        kwargs["params"] = args
    elif headers.get("Content-Type") == "application/json":
        kwargs["json"] = args
    elif isinstance(args, dict):
        kwargs["data"] = args
    elif isinstance(args, str):
        kwargs["content"] = args
    transport = httpx.AsyncHTTPTransport(verify=p.verify_tls, retries=p.max_retries)
    try:
        async with httpx.AsyncClient(
            transport=transport, timeout=_http_timeout(subst(p.timeout))
        ) as client:
            resp = await client.request(p.method, url, **kwargs)
    except httpx.TimeoutException:
        raise ActivityFailed("activity took too long to complete") from None
    except httpx.HTTPError as exc:
        raise ActivityFailed(f"failed to connect to {url}: {exc}") from None
    body: Any = resp.text
    if resp.headers.get("Content-Type") == "application/json":
        try:
            body = resp.json()
        except ValueError:
            raise ActivityFailed(f"{url} said application/json but sent no JSON") from None
    if p.expected_status is not None and resp.status_code != p.expected_status:
        raise ActivityFailed(f"expected HTTP {p.expected_status}, got {resp.status_code}")
    return {"status": resp.status_code, "headers": _raw_headers(resp), "body": body}


def _which(path: str) -> str | None:
    return shutil.which(os.path.expanduser(path))


async def _process(
    p: ProcessProvider, ctx: ActivityContext, extra: dict[str, Any]
) -> dict[str, Any]:
    args = ctx.subst(p.arguments)
    if extra:
        args = {**(args if isinstance(args, dict) else {}), **extra}
    path = await asyncio.to_thread(_which, p.path)
    if path is None:
        raise ActivityFailed(f"cannot find the executable {p.path!r}")
    if isinstance(args, str):
        # A string of arguments goes through the shell, as in Chaos Toolkit.
        proc = await asyncio.create_subprocess_shell(
            f"{path} {args}", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    else:
        items = itertools.chain.from_iterable(args.items()) if isinstance(args, dict) else args
        argv = [str(a) for a in items if a is not None and a != ""]
        proc = await asyncio.create_subprocess_exec(
            path, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    try:
        async with asyncio.timeout(p.timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ActivityFailed("process activity took too long to complete") from None
    return {
        "status": proc.returncode,
        "stdout": out.decode(errors="replace"),
        "stderr": err.decode(errors="replace"),
    }


async def run_provider(
    act: Action | Probe, ctx: ActivityContext, extra: dict[str, Any] | None = None
) -> Any:
    """The activity's output; raises on failure. ``extra`` arguments are added (the
    ``value`` a probe tolerance is called with)."""
    p = act.provider
    if isinstance(p, PythonProvider):
        return await _python(p, ctx, extra or {})
    if isinstance(p, HttpProvider):
        return await _http(p, ctx, extra or {})
    return await _process(p, ctx, extra or {})


# --- tolerances -----------------------------------------------------------------------------


_NO_TARGET = object()
"""A ``target`` was named but the output is no mapping to take it from: not met."""


def _target(output: Any, target: str | None) -> Any:
    if not target:
        return output
    return output.get(target, output) if isinstance(output, dict) else _NO_TARGET


async def within_tolerance(tolerance: Tolerance, output: Any, ctx: ActivityContext) -> bool:
    """Chaos Toolkit's rules, type by type (see :data:`schemas.experiment.Tolerance`)."""
    subst = ctx.subst
    status = output.get("status") if isinstance(output, dict) and "status" in output else None
    has_status = isinstance(output, dict) and "status" in output
    if isinstance(tolerance, bool):
        return bool(output == tolerance)
    if isinstance(tolerance, int):
        return bool((status if has_status else output) == tolerance)
    if isinstance(tolerance, str):
        return bool(output == subst(tolerance))
    if isinstance(tolerance, list):
        if has_status:
            return status in tolerance
        if len(tolerance) == 2:
            try:
                return bool(tolerance[0] <= output <= tolerance[1])
            except TypeError:
                return False
        return output in tolerance
    if isinstance(tolerance, Probe):
        try:
            return bool(await run_provider(tolerance, ctx, {"value": output}))
        except Exception:
            return False
    if isinstance(tolerance, RegexTolerance):
        value = _target(output, tolerance.target)
        if not isinstance(value, str):
            return False
        try:
            return re.search(str(subst(tolerance.pattern)), value) is not None
        except re.error:
            return False
    if isinstance(tolerance, JsonPathTolerance):
        value = _target(output, tolerance.target)
        return value is not _NO_TARGET and _jsonpath_met(tolerance, value, subst)
    if isinstance(tolerance, RangeTolerance):
        value = _target(output, tolerance.target)
        try:
            number = Decimal(value)
        except (InvalidOperation, TypeError, ValueError):
            return False
        low, high = tolerance.range
        return Decimal(low) <= number <= Decimal(high)
    return False


def _jsonpath_met(tolerance: JsonPathTolerance, value: Any, subst: Substitution) -> bool:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    try:
        values = jsonpath_values(str(subst(tolerance.path)), value)
    except ValueError:
        return False
    met = len(values) > 0
    if tolerance.count is not None:
        met = len(values) == tolerance.count
    if tolerance.has_expect:
        expect = subst(tolerance.expect)
        met = values == (expect if isinstance(expect, list) else [expect])
    return met


# --- one activity ---------------------------------------------------------------------------


def _pause_s(value: float | str, ctx: ActivityContext) -> float:
    seconds = ctx.subst(value)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise ActivityFailed(f"pause {value!r} is {seconds!r}, not a number of seconds")
    return float(seconds)


async def run_activity(
    act: Action | Probe, ctx: ActivityContext, *, judge: bool = True
) -> ActivityRun:
    """Run one activity with its pauses and its controls' activity hooks; never raises
    except on cancellation. ``judge``: evaluate a probe's tolerance."""
    hooks = ctx.hooks
    raw = act.as_loaded()
    run: ActivityRun | None = None
    try:
        if hooks is not None:
            await hooks.apply("activity", "before", raw, context_controls=act.controls)
        run = await _run_activity(act, raw, ctx, judge=judge)
    finally:
        # As in Chaos Toolkit, the after hooks run even when a before hook stopped the run.
        if hooks is not None:
            state = run.ctk() if run is not None else None
            await hooks.apply("activity", "after", raw, state=state, context_controls=act.controls)
    return run


async def _run_activity(
    act: Action | Probe, raw: dict[str, Any], ctx: ActivityContext, *, judge: bool
) -> ActivityRun:
    start = time.time()
    output: Any = None
    exception: list[str] | None = None
    met: bool | None = None
    try:
        if act.pauses and act.pauses.before:
            await asyncio.sleep(_pause_s(act.pauses.before, ctx) * ctx.time_scale)
        start = time.time()
        output = await run_provider(act, ctx)
        if judge and isinstance(act, Probe) and act.tolerance is not None:
            met = await within_tolerance(act.tolerance, output, ctx)
    except Exception as exc:
        exception = traceback.format_exception_only(exc)
        met = False if judge and isinstance(act, Probe) and act.tolerance is not None else None
    end = time.time()
    run = ActivityRun(
        activity=raw,
        status="failed" if exception else "succeeded",
        output=_jsonable(output),
        start=_iso(start),
        end=_iso(end),
        duration=round(end - start, 6),
        exception=exception,
        tolerance_met=met,
    )
    if act.pauses and act.pauses.after:
        try:
            await asyncio.sleep(_pause_s(act.pauses.after, ctx) * ctx.time_scale)
        except ActivityFailed as exc:
            run = run.model_copy(
                update={"status": "failed", "exception": traceback.format_exception_only(exc)}
            )
    return run


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
