"""The target graph's check (experiments and analyzer configurations): refused exactly when
a dependency cycle exists, which the message names, however long the chain."""

from __future__ import annotations

import graphlib
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from analyzers.core import AnalyzerConfig
from schemas.targets import TargetGraph
from tests.analyzers.configs import names


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, list[str]]:
    """Any dependencies among a few targets, cycles and self-dependencies included."""
    nodes = draw(st.lists(names, min_size=1, max_size=7, unique=True))
    return {n: draw(st.lists(st.sampled_from(nodes), max_size=4, unique=True)) for n in nodes}


def _graph(deps: dict[str, list[str]]) -> dict[str, Any]:
    return {"targets": [{"name": n, "upstream": "h:1", "depends_on": d} for n, d in deps.items()]}


@settings(max_examples=300, deadline=None)
@given(deps=graphs())
def test_a_graph_is_refused_exactly_when_it_has_a_cycle_which_is_named(
    deps: dict[str, list[str]],
) -> None:
    try:
        list(graphlib.TopologicalSorter(deps).static_order())
        cyclic = False
    except graphlib.CycleError:
        cyclic = True
    try:
        TargetGraph.model_validate(_graph(deps))
        message = None
    except ValidationError as exc:
        message = str(exc.errors()[0]["msg"])
    assert (message is not None) == cyclic, message
    if message is not None:
        cycle = message.removeprefix("Value error, dependency cycle: ").split(" -> ")
        # A path along dependencies that ends where it came before: a cycle.
        assert all(b in deps[a] for a, b in itertools.pairwise(cycle))
        assert cycle[-1] in cycle[:-1]


@settings(max_examples=20, deadline=None)
@given(length=st.integers(1, 5000), closed=st.booleans())
def test_a_chain_of_dependencies_of_any_length_is_checked(length: int, closed: bool) -> None:
    deps = {f"t{i}": [f"t{i + 1}"] for i in range(length - 1)}
    deps[f"t{length - 1}"] = ["t0"] if closed else []
    doc = {"graph": _graph(deps)}
    if not closed:
        assert AnalyzerConfig.model_validate(doc).graph is not None
        return
    with pytest.raises(ValidationError, match="dependency cycle: t0 -> "):
        AnalyzerConfig.model_validate(doc)
