"""Running Chaos Toolkit activities (actions and probes) and judging probe tolerances.

Providers: ``python`` (``chaostoxi.*`` goes to the controller bridge, any other module is imported
and its function called), ``http`` (output: the status code, headers and body) and ``process``
(output: exit status, stdout, stderr). ``${key}`` in string arguments is replaced by the
experiment's configuration, as Chaos Toolkit does.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import re
import shlex
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from injector.chaostoxi import is_chaostoxi
from injector.journal import ActivityRun
from schemas.experiment import (
    Action,
    EnvValue,
    HttpProvider,
    Probe,
    ProcessProvider,
    PythonProvider,
    RangeTolerance,
    RegexTolerance,
    Tolerance,
)

if TYPE_CHECKING:
    from injector.chaostoxi import Bridge
    from schemas.experiment import ConfigValue

_SUBST = re.compile(r"\$\{([^}]+)\}")


def resolve_configuration(config: dict[str, ConfigValue]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, EnvValue):
            raw: Any = os.environ.get(value.key, value.default)
            kind = value.env_var_type
            if raw is not None and kind == "int":
                raw = int(raw)
            elif raw is not None and kind == "float":
                raw = float(raw)
            elif raw is not None and kind == "bool":
                raw = str(raw).lower() in ("1", "true", "yes")
            elif raw is not None and kind == "json":
                raw = json.loads(str(raw))
            out[key] = raw
        else:
            out[key] = value
    return out


def substitute(value: Any, config: dict[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _SUBST.fullmatch(value)
        if whole and whole.group(1) in config:
            return config[whole.group(1)]  # keep the type of a lone placeholder
        return _SUBST.sub(lambda m: str(config.get(m.group(1), m.group(0))), value)
    if isinstance(value, list):
        return [substitute(v, config) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, config) for k, v in value.items()}
    return value


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass
class ActivityContext:
    configuration: dict[str, Any]
    bridge: Bridge
    time_scale: float = 1.0


async def _python(p: PythonProvider, args: dict[str, Any], ctx: ActivityContext) -> Any:
    if is_chaostoxi(p.module):
        return await ctx.bridge.call(p.module, p.func, args)
    fn = getattr(importlib.import_module(p.module), p.func)
    params = inspect.signature(fn).parameters
    if "configuration" in params and "configuration" not in args:
        args = {**args, "configuration": ctx.configuration}
    if inspect.iscoroutinefunction(fn):
        return await fn(**args)
    return await asyncio.to_thread(fn, **args)


async def _http(p: HttpProvider, ctx: ActivityContext) -> dict[str, Any]:
    url = substitute(p.url, ctx.configuration)
    kwargs: dict[str, Any] = {"headers": substitute(p.headers, ctx.configuration)}
    args = substitute(p.arguments, ctx.configuration)
    if isinstance(args, dict):
        if p.method in ("GET", "HEAD", "DELETE"):
            kwargs["params"] = args
        else:
            kwargs["json"] = args
    elif isinstance(args, str):
        kwargs["content"] = args
    async with httpx.AsyncClient(verify=p.verify_tls, timeout=p.timeout or 30.0) as client:
        resp = await client.request(p.method, url, **kwargs)
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.text
    if p.expected_status is not None and resp.status_code != p.expected_status:
        raise RuntimeError(f"expected HTTP {p.expected_status}, got {resp.status_code}")
    return {"status": resp.status_code, "headers": dict(resp.headers), "body": body}


async def _process(p: ProcessProvider, ctx: ActivityContext) -> dict[str, Any]:
    args = substitute(p.arguments, ctx.configuration)
    argv = shlex.split(args) if isinstance(args, str) else [str(a) for a in args]
    proc = await asyncio.create_subprocess_exec(
        substitute(p.path, ctx.configuration),
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(p.timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return {
        "status": proc.returncode,
        "stdout": out.decode(errors="replace"),
        "stderr": err.decode(errors="replace"),
    }


def within_tolerance(tolerance: Tolerance, output: Any, provider_type: str) -> bool:
    """Chaos Toolkit's rules: HTTP and process outputs are judged by their status unless a
    tolerance object names another target."""
    value = output
    if provider_type in ("http", "process") and isinstance(output, dict):
        value = output.get("status")
    if isinstance(tolerance, RegexTolerance):
        target = tolerance.target or ("body" if provider_type == "http" else "stdout")
        text = output.get(target) if isinstance(output, dict) else output
        if not isinstance(text, str):
            text = json.dumps(text)
        return re.search(tolerance.pattern, text) is not None
    if isinstance(tolerance, RangeTolerance):
        if tolerance.target and isinstance(output, dict):
            value = output.get(tolerance.target)
        try:
            v = float(value)
        except (TypeError, ValueError):
            return False
        return tolerance.range[0] <= v <= tolerance.range[1]
    if isinstance(tolerance, list):
        return value in tolerance
    if isinstance(tolerance, bool):
        return value is tolerance or value == tolerance
    return bool(value == tolerance)


async def run_activity(act: Action | Probe, ctx: ActivityContext) -> ActivityRun:
    """Run one activity with its pauses; never raises except on cancellation."""
    if act.pauses and act.pauses.before:
        await asyncio.sleep(act.pauses.before * ctx.time_scale)
    start = time.time()
    status: str = "succeeded"
    output: Any = None
    exception: list[str] | None = None
    met: bool | None = None
    try:
        p = act.provider
        if isinstance(p, PythonProvider):
            output = await _python(p, substitute(dict(p.arguments), ctx.configuration), ctx)
        elif isinstance(p, HttpProvider):
            output = await _http(p, ctx)
        else:
            output = await _process(p, ctx)
        if isinstance(act, Probe) and act.tolerance is not None:
            met = within_tolerance(act.tolerance, output, p.type)
    except Exception as exc:
        status = "failed"
        exception = traceback.format_exception_only(exc)
        met = False if isinstance(act, Probe) else None
    end = time.time()
    if act.pauses and act.pauses.after:
        await asyncio.sleep(act.pauses.after * ctx.time_scale)
    return ActivityRun(
        activity=act,
        status="succeeded" if status == "succeeded" else "failed",
        output=_jsonable(output),
        start=_iso(start),
        end=_iso(end),
        duration=round(end - start, 6),
        exception=exception,
        tolerance_met=met,
    )


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
