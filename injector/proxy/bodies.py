"""Request bodies, decoded with Toxiproxy's checks, order and error messages."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

from injector.proxy import gojson
from injector.proxy.errors import INVALID_STREAM, INVALID_TOXIC_TYPE, BadRequest
from injector.proxy.model import Direction, Match
from injector.proxy.toxics import REGISTRY

if TYPE_CHECKING:
    from injector.proxy.toxics import ToxicConfig, ToxicType

MAX_TTL_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class ProxyInput:
    """Fields of a proxy body; ``None`` means "not in the body"."""

    name: str | None = None
    listen: str | None = None
    upstream: str | None = None
    enabled: bool | None = None
    ttl_ms: int | None = None
    ttl_given: bool = False


@dataclass(frozen=True)
class ToxicInput:
    name: str
    kind: ToxicType
    type_as_sent: str
    stream_as_sent: str
    direction: Direction
    toxicity: float
    attributes: dict[str, object]
    """Raw: parsed after the duplicate-name check, as upstream does."""
    match: Match | None
    ttl_ms: int | None


@dataclass(frozen=True)
class ToxicUpdate:
    attributes: dict[str, object] | None
    toxicity: float | None
    match: Match | None
    match_given: bool
    ttl_ms: int | None
    ttl_given: bool


def _object(value: object, go_type: str) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise gojson.type_error(value, "value", go_type)
    return value


def _string(obj: dict[str, object], key: str, struct: str) -> str | None:
    found, value = gojson.field(obj, key)
    if not found or value is None:
        return None
    if not isinstance(value, str):
        raise gojson.type_error(value, f"struct field {struct}.{key}", "string")
    return value


def _bool(obj: dict[str, object], key: str, struct: str) -> bool | None:
    found, value = gojson.field(obj, key)
    if not found or value is None:
        return None
    if not isinstance(value, bool):
        raise gojson.type_error(value, f"struct field {struct}.{key}", "bool")
    return value


def _float32(obj: dict[str, object], key: str, struct: str) -> float | None:
    found, value = gojson.field(obj, key)
    if not found or value is None:
        return None
    if not gojson.is_number(value) or not abs(float(value)) < gojson.FLOAT32_LIMIT:  # type: ignore[arg-type]
        raise gojson.type_error(value, f"struct field {struct}.{key}", "float32")
    return float(value)  # type: ignore[arg-type]


def _toxicity(value: float | None) -> float | None:
    """Toxicity is a probability. (Toxiproxy stores any float32; outside 0..1 it acts as 0 or 1,
    which hides a typo, so this server refuses it.)"""
    if value is not None and not 0.0 <= value <= 1.0:
        raise BadRequest.body(f"toxicity must be between 0 and 1, got {gojson.format_float(value)}")
    return value


MAX_NAME_CHARS = 200
"""Longest proxy or toxic name: names travel in every fault event, whose identifiers stop here."""


def _name(value: str | None, what: str) -> str | None:
    if value is not None and len(value) > MAX_NAME_CHARS:
        raise BadRequest.body(
            f"{what} must be at most {MAX_NAME_CHARS} characters, got {len(value)}"
        )
    return value


def _ttl(obj: dict[str, object], struct: str) -> tuple[bool, int | None]:
    """``ttl_ms``: a positive integer; 0 or null clears a lease."""
    found, value = gojson.field(obj, "ttl_ms")
    if not found:
        return False, None
    if value is None:
        return True, None
    if isinstance(value, bool) or not isinstance(value, int):
        raise gojson.type_error(value, f"struct field {struct}.ttl_ms", "int64")
    if value == 0:
        return True, None
    if not 0 < value <= MAX_TTL_MS:
        raise BadRequest.body(f"ttl_ms must be between 1 and {MAX_TTL_MS}, got {value}")
    return True, value


def _match(obj: dict[str, object]) -> tuple[bool, Match | None]:
    found, value = gojson.field(obj, "match")
    if not found:
        return False, None
    if value is None:
        return True, None
    if not isinstance(value, dict):
        raise gojson.type_error(value, "struct field ToxicWrapper.match", "Match")
    try:
        return True, Match.model_validate(value)
    except ValidationError as exc:
        raise BadRequest.body(_pydantic_detail(exc, "match")) from None


def _pydantic_detail(exc: ValidationError, prefix: str) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join([prefix, *(str(p) for p in error["loc"])])
    return f"{where}: {error['msg']}"


def proxy_input(body: bytes) -> ProxyInput:
    """A proxy body (create or update)."""
    return proxy_fields(gojson.decode(body), "Proxy")


def proxy_fields(value: object, struct: str) -> ProxyInput:
    obj = _object(value, "proxy.Proxy")
    ttl_given, ttl_ms = _ttl(obj, struct)
    return ProxyInput(
        name=_name(_string(obj, "name", struct), "name"),
        listen=_string(obj, "listen", struct),
        upstream=_string(obj, "upstream", struct),
        enabled=_bool(obj, "enabled", struct),
        ttl_ms=ttl_ms,
        ttl_given=ttl_given,
    )


def populate_input(body: bytes) -> list[ProxyInput]:
    value = gojson.decode(body)
    if not isinstance(value, list):
        raise gojson.type_error(value, "value", "[]proxy.Proxy")
    entries = [proxy_fields(item, "Proxy") for item in value]
    for number, entry in enumerate(entries, start=1):
        if not entry.name:
            raise BadRequest.missing_field(f"name at proxy {number}")
        if not entry.upstream:
            raise BadRequest.missing_field(f"upstream at proxy {number}")
    return entries


def _go_struct(type_name: str) -> str:
    return "".join(part.capitalize() for part in type_name.split("_")) + "Toxic"


_GO_TYPES = {"int": "int64", "float": "float64", "str": "string"}


def parse_attributes(kind: ToxicType, attributes: dict[str, object]) -> ToxicConfig:
    for key, declared in kind.config.model_fields.items():
        value = attributes.get(key)
        if isinstance(value, gojson.Number) and not math.isfinite(value):
            go_type = _GO_TYPES.get(getattr(declared.annotation, "__name__", ""), "float64")
            raise gojson.type_error(
                value, f"struct field {_go_struct(kind.name)}.attributes.{key}", go_type
            )
    try:
        return kind.parse(attributes)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        key = str(error["loc"][0]) if error["loc"] else "?"
        value = attributes.get(key)
        if error["type"].endswith("_type") or error["type"] == "literal_error":
            model_field = kind.config.model_fields.get(key)
            annotation = model_field.annotation if model_field is not None else None
            go_type = _GO_TYPES.get(getattr(annotation, "__name__", ""), "string")
            is_number = isinstance(value, int | float) and not isinstance(value, bool)
            wrong_kind = not (
                (go_type == "string" and isinstance(value, str))
                or (go_type != "string" and is_number)
            )
            if wrong_kind or (go_type == "int64" and isinstance(value, float)):
                raise gojson.type_error(
                    value, f"struct field {_go_struct(kind.name)}.attributes.{key}", go_type
                ) from None
        raise BadRequest.body(_pydantic_detail(exc, "attributes")) from None


def toxic_input(body: bytes) -> ToxicInput:
    """A new toxic. Checks in upstream's order: JSON, stream, type, (duplicate), attributes."""
    obj = _object(gojson.decode(body), "toxics.ToxicWrapper")
    struct = "ToxicWrapper"
    name = _name(_string(obj, "name", struct), "name") or ""
    type_as_sent = _string(obj, "type", struct) or ""
    stream_found, _ = gojson.field(obj, "stream")
    stream_as_sent = _string(obj, "stream", struct)
    if stream_as_sent is None:
        stream_as_sent = "" if stream_found else "downstream"
    toxicity = _float32(obj, "toxicity", struct)
    found, attributes = gojson.field(obj, "attributes")
    if found and attributes is not None and not isinstance(attributes, dict):
        raise gojson.type_error(attributes, f"struct field {struct}.attributes", "toxics.Toxic")
    _, match = _match(obj)
    _, ttl_ms = _ttl(obj, struct)
    try:
        direction = Direction(stream_as_sent.lower())
    except ValueError:
        raise BadRequest(INVALID_STREAM) from None
    kind = REGISTRY.get(type_as_sent)
    if kind is None:
        raise BadRequest(INVALID_TOXIC_TYPE)
    _toxicity(toxicity)
    if not name:
        name = _name(f"{type_as_sent}_{stream_as_sent}", "name") or ""
    return ToxicInput(
        name=name,
        kind=kind,
        type_as_sent=type_as_sent,
        stream_as_sent=stream_as_sent,
        direction=direction,
        toxicity=1.0 if toxicity is None else toxicity,
        attributes=attributes if isinstance(attributes, dict) else {},
        match=match,
        ttl_ms=ttl_ms,
    )


def toxic_update(body: bytes) -> ToxicUpdate:
    obj = _object(gojson.decode(body), "toxics.ToxicWrapper")
    found, attributes = gojson.field(obj, "attributes")
    if found and attributes is not None and not isinstance(attributes, dict):
        raise gojson.type_error(attributes, "struct field .attributes", "toxics.Toxic")
    match_given, match = _match(obj)
    ttl_given, ttl_ms = _ttl(obj, "ToxicWrapper")
    return ToxicUpdate(
        attributes=attributes if isinstance(attributes, dict) else None,
        toxicity=_toxicity(_float32(obj, "toxicity", "")),
        match=match,
        match_given=match_given,
        ttl_ms=ttl_ms,
        ttl_given=ttl_given,
    )


def renew_input(body: bytes) -> int | None:
    """The optional ``{"ttl_ms": n}`` of a renew request."""
    if not body.strip():
        return None
    obj = _object(gojson.decode(body), "renew")
    _, ttl_ms = _ttl(obj, "Renew")
    return ttl_ms
