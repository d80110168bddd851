"""Write the JSON Schema of every model family to ``schemas/jsonschema/`` for non-Python consumers.

Run ``python -m schemas.export``; ``tests/test_schemas.py`` fails when the committed files drift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from schemas.events import Event
from schemas.experiment import Experiment
from schemas.load import LoadProfile
from schemas.targets import Target

if TYPE_CHECKING:
    from collections.abc import Callable

OUT_DIR = Path(__file__).parent / "jsonschema"

FAMILIES: dict[str, Callable[[], dict[str, Any]]] = {
    "event": lambda: TypeAdapter(Event).json_schema(),
    "experiment": lambda: Experiment.model_json_schema(by_alias=True),
    "load-profile": LoadProfile.model_json_schema,
    "target": Target.model_json_schema,
}


def render(name: str) -> str:
    schema = FAMILIES[name]()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://aftershock.dev/schemas/{name}.schema.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_all(out_dir: Path = OUT_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in FAMILIES:
        path = out_dir / f"{name}.schema.json"
        path.write_text(render(name))
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_all():
        print(p)
