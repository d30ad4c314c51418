"""JSON Schema snapshots: each signature's compact schema must equal tests/data/schemas/<case>.json.

After a deliberate schema change, review the diff and rewrite them with COMPOSITE_UPDATE_SNAPSHOTS=1.
"""

from __future__ import annotations

import enum
import json
import os
from pathlib import Path
from typing import Annotated, Literal, Optional

import pytest
from pydantic import BaseModel, Field

from tools import ToolRegistry, default_registry
from tools.registry import tool_from_function

SNAPSHOTS = Path(__file__).parent / "data" / "schemas"


class Point(BaseModel):
    """A point on the map."""

    x: float
    y: float = 0.0


class Route(BaseModel):
    name: Annotated[str, Field(description="Route name")]
    stops: list[Point]


class Tree(BaseModel):
    label: str
    children: list["Tree"] = []


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


def annotated_str(city_name: Annotated[str, "The name of the city to be queried"]) -> str:
    """Get the weather of a city."""
    return city_name


def field_description(count: Annotated[int, Field(description="How many items", ge=1, le=10)]) -> int:
    """Count things."""
    return count


def defaults(name: str, repeat: int = 1, ratio: float = 0.5, loud: bool = False, note: str = "hi") -> str:
    """Defaults make parameters optional."""
    return name


def literal(unit: Annotated[Literal["celsius", "fahrenheit"], "Temperature unit"] = "celsius") -> str:
    """Literal becomes an enum."""
    return unit


def optional(a: Optional[str] = None, b: int | None = None, c: Annotated[float | None, "Maybe a number"] = None) -> str:
    """Optional parameters."""
    return ""


def lists(words: list[str], scores: Annotated[list[float], "Scores"] = [], nested: list[list[int]] = []) -> str:  # noqa: B006
    """Lists of things."""
    return ""


def tuples(pair: tuple[int, int], many: tuple[float, ...] = (), mixed: tuple[str, int, bool] = ("a", 1, True)) -> str:
    """Tuples of things."""
    return ""


def dicts(counts: dict[str, int], meta: Annotated[dict[str, str], "Free-form metadata"] = {}) -> str:  # noqa: B006
    """Dicts of things."""
    return ""


def nested_model(route: Route, origin: Point | None = None, extras: list[Point] = []) -> str:  # noqa: B006
    """Nested pydantic models are inlined."""
    return ""


def recursive_model(tree: Tree) -> str:
    """A recursive model keeps its $defs."""
    return ""


def enum_param(color: Color = Color.RED) -> str:
    """Enums become enum lists."""
    return ""


def google_args(city: str, days: int = 3, units: Literal["metric", "imperial"] = "metric") -> str:
    """Forecast for a city.

    Longer explanation that is not part of the description.

    Args:
        city (str): The city to forecast.
        days: Number of days,
            from 1 to 7.
        units: Unit system.

    Returns:
        A forecast text.
    """
    return ""


def no_parameters() -> str:
    """Takes no arguments."""
    return ""


def reserved_names(json: str, model_name: Annotated[str, "A name"], schema: int = 0) -> str:
    """Parameter names that pydantic reserves keep their names in the schema."""
    return json


def mixed_descriptions(
    a: Annotated[str, "From Annotated"], b: Annotated[int, Field(description="From Field")], c: bool = True
) -> str:
    """Descriptions from several sources.

    Args:
        a: Loses to the Annotated string.
        c: From the docstring.
    """
    return ""


def field_defaults(
    a: Annotated[int, Field(description="From Field")],
    b: int = Field(3, description="From a Field default", ge=0),
    c: list[int] = Field(default_factory=list),
) -> str:
    """Field() as default; Field descriptions beat the docstring.

    Args:
        a: Loses to Field.
        b: Loses to Field.
        c: From the docstring.
    """
    return ""


CASES = [
    annotated_str,
    field_description,
    defaults,
    literal,
    optional,
    lists,
    tuples,
    dicts,
    nested_model,
    recursive_model,
    enum_param,
    google_args,
    no_parameters,
    reserved_names,
    mixed_descriptions,
    field_defaults,
]


def _check_snapshot(name: str, data: object) -> None:
    path = SNAPSHOTS / f"{name}.json"
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    if os.environ.get("COMPOSITE_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing snapshot {path}; write it with COMPOSITE_UPDATE_SNAPSHOTS=1 and review it"
    assert json.loads(path.read_text(encoding="utf-8")) == data, f"schema of {name} changed; see {path}"


@pytest.mark.parametrize("func", CASES, ids=[func.__name__ for func in CASES])
def test_schema_snapshot(func):
    tool = tool_from_function(func)
    _check_snapshot(func.__name__, tool.chatglm3())


def test_builtin_tools_snapshot():
    # The embedded model is trained on these exact schemas: a change here needs retraining.
    _check_snapshot("builtin_tools", default_registry.chatglm3_tools())


@pytest.mark.parametrize("func", CASES, ids=[func.__name__ for func in CASES])
def test_schemas_are_compact(func):
    text = json.dumps(tool_from_function(func).schema)
    assert '"title"' not in text
    if func is not recursive_model:
        assert "$ref" not in text and "$defs" not in text


def test_property_named_title_is_kept():
    def book(title: Annotated[str, "Book title"]) -> str:
        """Find a book."""
        return title

    schema = tool_from_function(book).schema
    assert schema == {
        "type": "object",
        "properties": {"title": {"type": "string", "description": "Book title"}},
        "required": ["title"],
    }


def test_schema_drives_validation_of_nested_models():
    registry = ToolRegistry()
    seen = {}

    @registry.register
    def route_length(route: Route) -> int:
        """Number of stops."""
        seen["route"] = route
        return len(route.stops)

    result = registry.call("route_length", {"route": {"name": "r", "stops": [{"x": 1}, {"x": 2, "y": 3}]}})
    assert result.ok and result.value == 2
    assert isinstance(seen["route"], Route) and seen["route"].stops[1] == Point(x=2, y=3)
