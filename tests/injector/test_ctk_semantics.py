"""Substitution, tolerances and control selection against chaostoolkit-lib itself.

chaostoolkit-lib is a test dependency: each property draws inputs and requires our answer to
be chaostoolkit-lib's (where chaostoolkit-lib raises on an input, ours must say "not met").
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from chaoslib import substitute as ctk_substitute
from chaoslib.control import get_context_controls
from chaoslib.hypothesis import within_tolerance as ctk_within_tolerance
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from injector.activities import ActivityContext, Substitution, within_tolerance
from injector.hooks import Hooks
from schemas.experiment import Experiment, Tolerance

NAMES = ["a", "b", "port", "token", "x_1"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.text(alphabet="ab$ {}", max_size=5)
)


@st.composite
def templates(draw: st.DrawFn) -> str:
    pieces = st.one_of(
        st.sampled_from(["${a}", "${b}", "${port}", "${token}", "${nope}", "$a", "$$", "$", "${"]),
        st.text(alphabet="xyz -/:", max_size=4),
    )
    return "".join(draw(st.lists(pieces, max_size=4)))


data = st.recursive(
    st.one_of(templates(), st.integers(), st.booleans(), st.none()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(NAMES), inner, max_size=3)
    ),
    max_leaves=8,
)
mappings = st.dictionaries(
    st.sampled_from(NAMES), st.one_of(scalars, st.lists(scalars)), max_size=4
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data, mappings, st.dictionaries(st.sampled_from(["s1", "s2"]), mappings, max_size=2))
@example(["$a", "${a}", "x $a"], {"a": None}, {})  # a bare $a is made a string; ${a} is not
def test_substitution_is_chaostoolkits(value: Any, config: Any, secrets: Any) -> None:
    assert Substitution(config, secrets)(value) == ctk_substitute(value, config, secrets)


values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 300),
        st.sampled_from(["ok", "v1.2.3", "", '{"items": [{"id": 1}, {"id": 2}]}', "7", "x"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.fixed_dictionaries(
            {"status": st.sampled_from([200, 404, 500])},
            optional={"body": inner, "stdout": inner},
        ),
        st.dictionaries(st.sampled_from(["items", "id", "ok"]), inner, max_size=3),
    ),
    max_leaves=6,
)

tolerances = st.one_of(
    st.booleans(),
    st.integers(-3, 300),
    st.sampled_from(["ok", "x", "${a}"]),
    st.lists(st.one_of(st.integers(-3, 300), st.sampled_from(["ok", "x"])), max_size=3),
    st.builds(
        lambda p, t: {"type": "regex", "pattern": p, **({"target": t} if t else {})},
        st.sampled_from([r"v1\.\d", "^ok$", "x", "${a}", ""]),
        st.sampled_from([None, "body", "stdout"]),
    ),
    st.builds(
        lambda p, t, extra: {
            "type": "jsonpath",
            "path": p,
            **({"target": t} if t else {}),
            **extra,
        },
        st.sampled_from(["$.items[*].id", "$.ok", "$[*]", "$.status", "$..id"]),
        st.sampled_from([None, "body"]),
        st.one_of(
            st.just({}),
            st.builds(lambda n: {"count": n}, st.integers(0, 3)),
            st.builds(
                lambda e: {"expect": e},
                st.one_of(st.integers(0, 3), st.lists(st.integers(0, 3), max_size=2), st.none()),
            ),
        ),
    ),
    st.builds(
        lambda lo, width, t: {
            "type": "range",
            "range": [lo, lo + width],
            **({"target": t} if t else {}),
        },
        st.integers(-3, 250),
        st.integers(0, 100),
        st.sampled_from([None, "status", "body"]),
    ),
)
_TOLERANCE: TypeAdapter[Any] = TypeAdapter(Tolerance)
_CONFIG = {"a": "ok"}


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(tolerances, values)
def test_tolerances_are_chaostoolkits(raw: Any, value: Any) -> None:
    ours = asyncio.run(
        within_tolerance(
            _TOLERANCE.validate_python(raw),
            value,
            ActivityContext(configuration=dict(_CONFIG), bridge=None),  # type: ignore[arg-type]
        )
    )
    logging.disable(logging.CRITICAL)  # chaostoolkit-lib logs every comparison
    try:
        # chaostoolkit-lib substitutes a string tolerance before judging it
        # (run_steady_state_hypothesis); its within_tolerance alone does not.
        tolerance = ctk_substitute(raw, dict(_CONFIG), {}) if isinstance(raw, str) else raw
        theirs = ctk_within_tolerance(tolerance, value, configuration=dict(_CONFIG), secrets={})
    except (TypeError, AttributeError, ValueError):
        theirs = False  # chaostoolkit-lib crashes on this pair; we say "not met"
    finally:
        logging.disable(logging.NOTSET)
    assert ours is bool(theirs), (raw, value, theirs)


def _control(name: str, automatic: bool) -> dict[str, Any]:
    provider = {"type": "python", "module": "injector.audit_control", "arguments": {"path": "x"}}
    return {"name": name, "provider": provider, "automatic": automatic}


controls = st.lists(
    st.builds(_control, st.sampled_from(["c1", "c2", "c3"]), st.booleans()), max_size=3
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    controls,
    controls,
    st.sampled_from(["experiment", "hypothesis", "method", "rollback", "activity"]),
)
def test_control_selection_is_chaostoolkits(top: Any, own: Any, level: Any) -> None:
    activity = {
        "type": "action",
        "name": "act",
        "provider": {"type": "python", "module": "tests.injector.ctkmod", "func": "truthy"},
        **({"controls": own} if own else {}),
    }
    raw = {"title": "t", "description": "d", "controls": top, "method": [activity]}
    exp = Experiment.model_validate(raw)
    hooks = Hooks(exp, Substitution({}))
    context = raw if level == "experiment" else activity
    theirs = [c["name"] for c in get_context_controls(level, raw, context)]
    own_models = exp.method[0].controls  # type: ignore[union-attr]
    ours = [c.name for c in hooks.controls_for(level, own_models)]
    assert ours == theirs
