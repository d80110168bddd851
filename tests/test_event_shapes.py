"""The session event shape has one source, ``schemas.events``; its other forms are checked
against it mechanically: the analyzers' msgspec structs here (field for field, in order), the
recorder's byte templates in ``tests/generators/test_recorder.py`` (byte for byte against the
codec), and both decoders' acceptance in ``tests/analyzers/test_decode.py``."""

from __future__ import annotations

import typing

from analyzers.core.events import PAIRS
from schemas.events import EVENT_TYPES


def test_every_session_kind_has_an_analysis_form() -> None:
    session_kinds = {
        t.model_fields["kind"].default
        for t in EVENT_TYPES
        if str(t.model_fields["kind"].default).startswith("session.")
    }
    assert {p.model_fields["kind"].default for p, _ in PAIRS} == session_kinds


def test_analysis_forms_have_the_models_fields_in_order() -> None:
    for model, struct in PAIRS:
        assert struct.__struct_config__.tag == model.model_fields["kind"].default
        expected = tuple(name for name in model.model_fields if name != "kind")
        assert struct.__struct_fields__ == expected, model.__name__


def _nullable(annotation: object) -> bool:
    return annotation is type(None) or any(_nullable(a) for a in typing.get_args(annotation))


def test_analysis_forms_are_optional_where_the_models_are() -> None:
    for model, struct in PAIRS:
        hints = typing.get_type_hints(struct, include_extras=True)
        for name, field in model.model_fields.items():
            if name == "kind":
                continue
            model_nullable = _nullable(field.annotation)
            struct_nullable = _nullable(hints[name])
            assert model_nullable == struct_nullable, f"{model.__name__}.{name}"
