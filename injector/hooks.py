"""Chaos Toolkit controls: a Python module's hook functions, called around the run.

A control names a module (``provider: {type: python, module: ..., arguments: ...}``). As in
chaostoolkit-lib, the module may define ``configure_control`` (once per control name, before
the run), ``before_<level>_control`` and ``after_<level>_control`` for the levels
``experiment``, ``hypothesis``, ``method``, ``rollback`` and ``activity``, and
``cleanup_control`` (after the run). Each hook gets ``context`` (the experiment, hypothesis or
activity as written in the file) plus, when its signature asks for them, ``state`` (after
hooks: the journal, the hypothesis state, the method's or rollbacks' runs, the activity's run),
``experiment``, ``configuration``, ``secrets``, ``extensions`` and ``settings``; the control's
``arguments`` (with ``${name}`` substituted) are passed as keyword arguments. A hook that fails
is logged and the run goes on, except an exception named ``InterruptExecution`` (chaoslib's),
which stops the run as ``interrupted``.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import inspect
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from injector.errors import InjectorError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import ModuleType

    from injector.activities import Substitution
    from schemas.experiment import Control, Experiment

log = logging.getLogger(__name__)

Level = Literal["experiment", "hypothesis", "method", "rollback", "activity"]
Scope = Literal["before", "after"]


class ControlModuleMissing(InjectorError):
    """A control's module cannot be imported (Chaos Toolkit would skip it with a warning)."""


class ControlInterrupted(InjectorError):
    """A control hook raised ``InterruptExecution``: the run stops as interrupted."""


@dataclass(frozen=True, slots=True)
class HookCall:
    """One hook called: what the journal's ``aftershock.controls_called`` lists."""

    control: str
    hook: str
    context: str
    error: str | None = None


def _all_controls(exp: Experiment) -> list[Control]:
    found: list[Control] = list(exp.controls)
    ssh = exp.steady_state_hypothesis
    if ssh is not None:
        found.extend(ssh.controls or [])
        for p in ssh.probes:
            found.extend(getattr(p, "controls", None) or [])
    for act in [*exp.method, *exp.rollbacks]:
        found.extend(getattr(act, "controls", None) or [])
    return found


@dataclass
class Hooks:
    """The experiment's controls, imported once; ``apply`` runs the hooks of one level."""

    experiment: Experiment
    subst: Substitution
    calls: list[HookCall] = field(default_factory=list)
    modules: dict[str, ModuleType] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.raw = self.experiment.as_loaded()
        for c in _all_controls(self.experiment):
            module = c.provider.module
            if module in self.modules:
                continue
            try:
                self.modules[module] = importlib.import_module(module)
            except ImportError as exc:
                raise ControlModuleMissing(
                    f"control {c.name!r}: cannot import its module {module!r} ({exc}); install "
                    "it, or remove the control"
                ) from None

    @property
    def any(self) -> bool:
        return bool(self.modules)

    def _unique(self) -> list[Control]:
        seen: set[str] = set()
        out = []
        for c in _all_controls(self.experiment):
            if c.name not in seen:
                seen.add(c.name)
                out.append(c)
        return out

    async def configure(self) -> None:
        for c in self._unique():
            fn = getattr(self.modules[c.provider.module], "configure_control", None)
            if fn is None:
                continue
            args = copy.deepcopy(dict(c.provider.arguments))
            self._offer(
                fn,
                args,
                experiment=self.raw,
                secrets=self.subst.secrets,
                configuration=self.subst.configuration,
                settings=None,
                event_registry=None,
            )
            await self._call(c, "configure_control", "", fn, args)

    async def cleanup(self) -> None:
        for c in self._unique():
            fn = getattr(self.modules[c.provider.module], "cleanup_control", None)
            if fn is not None:
                await self._call(c, "cleanup_control", "", fn, {})

    def controls_for(
        self, level: Level, context_controls: Sequence[Control] | None
    ) -> list[Control]:
        """Which controls apply at ``level``, by chaostoolkit-lib's rules: the context's own
        controls, with the experiment's automatic ones in front of them (at the method and
        rollback levels: the experiment's automatic ones only)."""
        top = list(self.experiment.controls)
        if level == "experiment":
            return top
        controls = list(context_controls or [])
        if not top:
            return controls
        if not controls or level in ("method", "rollback"):
            return [c for c in top if c.automatic]
        for c in list(controls):
            for tc in reversed(top):
                if c.name != tc.name and tc.automatic:
                    controls.insert(0, tc)
        return controls

    async def apply(
        self,
        level: Level,
        scope: Scope,
        context: dict[str, Any],
        *,
        state: Any = None,
        context_controls: Sequence[Control] | None = None,
    ) -> None:
        """Call ``{scope}_{level}_control`` of every control that applies."""
        if not self.modules:
            return
        hook = f"{scope}_{level}_control"
        for c in self.controls_for(level, context_controls):
            if c.scope is not None and c.scope != scope:
                continue
            fn = getattr(self.modules[c.provider.module], hook, None)
            if fn is None:
                continue
            args = self.subst(copy.deepcopy(dict(c.provider.arguments)))
            self._offer(
                fn,
                args,
                secrets=self.subst.secrets,
                configuration=self.subst.configuration,
                state=state,
                experiment=self.raw,
                extensions=self.raw.get("extensions"),
                settings=None,
            )
            args["context"] = context
            await self._call(
                c, hook, str(context.get("name") or context.get("title") or ""), fn, args
            )

    @staticmethod
    def _offer(fn: Callable[..., Any], args: dict[str, Any], **offered: Any) -> None:
        params = inspect.signature(fn).parameters
        for name, value in offered.items():
            if name in params:
                args[name] = value

    async def _call(
        self, c: Control, hook: str, where: str, fn: Callable[..., Any], args: dict[str, Any]
    ) -> None:
        error: str | None = None
        try:
            if inspect.iscoroutinefunction(fn):
                await fn(**args)
            else:
                await asyncio.to_thread(fn, **args)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if type(exc).__name__ == "InterruptExecution":
                self.calls.append(HookCall(c.name, hook, where, error))
                raise ControlInterrupted(f"control {c.name!r} ({hook}): {exc}") from exc
            log.warning("control %r: %s failed: %s", c.name, hook, error)
        self.calls.append(HookCall(c.name, hook, where, error))
