"""Tool schemas from Python functions: type hints, `Annotated` / `Field` / `Args:` descriptions and the
docstring summary become a pydantic model (which validates a call's arguments) and a compact JSON Schema.
"""
from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from composite.errors import ToolRegistrationError

__all__ = ["FunctionSchema", "function_schema", "compact_schema", "parse_docstring", "valid_tool_name", "RESERVED_NAMES"]

# The dialect reads a tool name from the metadata line; "interpreter" there means code, not a tool.
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
RESERVED_NAMES = {"interpreter", "tool_call"}
_SECTION_RE = re.compile(r"^([A-Z][A-Za-z ]*):\s*$")
_ARGS_HEADERS = {"Args", "Arguments", "Parameters", "Params"}
_ARG_LINE_RE = re.compile(r"^\*{0,2}([A-Za-z_][A-Za-z0-9_]*)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")


# ---------------------------------------------------------------------------------------------------
# docstrings


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from a docstring: first paragraph + Google `Args:`."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION_RE.match(line.strip()):
            break
        summary.append(line.strip())
    params: dict[str, str] = {}
    in_args = False
    current: str | None = None
    params_indent = 0
    for line in lines:
        header = _SECTION_RE.match(line)
        if header and not line.startswith((" ", "\t")):
            in_args = header.group(1) in _ARGS_HEADERS
            current = None
            continue
        if not in_args:
            continue
        if not line.strip():
            current = None
            continue
        indent = len(line) - len(line.lstrip())
        entry = _ARG_LINE_RE.match(line.strip())
        if entry and (current is None or indent <= params_indent):
            current, params_indent = entry.group(1), indent
            params[current] = entry.group(3).strip()
        elif current is not None:
            params[current] = f"{params[current]} {line.strip()}".strip()
    return " ".join(summary), params


# ---------------------------------------------------------------------------------------------------
# schemas

_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
_SCHEMA_ONE = ("items", "additionalProperties", "not", "contains")
_KEY_ORDER = ("type", "description", "enum", "const", "properties", "required", "items", "prefixItems", "anyOf")


def _walk(schema: Any, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """Apply fn to every sub-schema (bottom-up), never to data such as defaults, enums or property names."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _walk(sub, fn) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_walk(sub, fn) for sub in value]
        elif key in _SCHEMA_ONE and isinstance(value, dict):
            out[key] = _walk(value, fn)
        else:
            out[key] = value
    return fn(out)


def _strip_titles(schema: dict[str, Any]) -> dict[str, Any]:
    schema.pop("title", None)
    return schema


def _collapse_simple_union(schema: dict[str, Any]) -> dict[str, Any]:
    # Optional[str] is anyOf [{"type": "string"}, {"type": "null"}]; "type": ["string", "null"] says
    # the same in fewer tokens, and every token counts in a tiny model's system prompt.
    options = schema.get("anyOf")
    if (
        isinstance(options, list)
        and options
        and all(isinstance(opt, dict) and set(opt) == {"type"} and isinstance(opt["type"], str) for opt in options)
    ):
        schema = dict(schema)
        schema.pop("anyOf")
        schema["type"] = [opt["type"] for opt in options]
    return schema


def _order_keys(schema: dict[str, Any]) -> dict[str, Any]:
    first = {key: schema[key] for key in _KEY_ORDER if key in schema}
    return first | {key: value for key, value in schema.items() if key not in first}


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace `$ref`s to `$defs` by their content; a recursive model keeps its `$defs`."""
    defs = schema.get("$defs")
    if not defs:
        return schema

    def resolve(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [resolve(item, stack) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name in stack or name not in defs:
                raise RecursionError(name)
            merged = dict(resolve(defs[name], stack + (name,)))
            merged.update({key: resolve(value, stack) for key, value in node.items() if key != "$ref"})
            return merged
        return {key: (value if key in ("default", "enum", "const", "examples") else resolve(value, stack))
                for key, value in node.items()}

    try:
        body = {key: value for key, value in schema.items() if key != "$defs"}
        return resolve(body, ())
    except RecursionError:
        return schema


def compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """pydantic's JSON Schema made compact: no titles, inlined `$defs`, simple unions as type lists."""
    schema = _inline_refs(schema)
    schema = _walk(schema, lambda node: _order_keys(_collapse_simple_union(_strip_titles(node))))
    if schema.get("additionalProperties") is False:
        schema.pop("additionalProperties")  # extra arguments are rejected by validation anyway
    schema.setdefault("properties", {})
    return _order_keys(schema)


def _split_annotated(hint: Any) -> tuple[Any, str | None, list[Any]]:
    """Annotated[T, "desc", Field(...), ...] -> (T, "desc", [other metadata])."""
    if typing.get_origin(hint) is not Annotated:
        return hint, None, []
    base, *metadata = typing.get_args(hint)
    description = None
    rest: list[Any] = []
    for item in metadata:
        if isinstance(item, str):
            description = item
        else:
            rest.append(item)
    return base, description, rest


def _is_safe_field_name(name: str) -> bool:
    return not name.startswith(("_", "model_")) and not hasattr(BaseModel, name)


@dataclass
class FunctionSchema:
    """What a function's hints and docstring say: the tool's name, description, validating model and schema."""

    name: str
    description: str
    model: type[BaseModel]
    schema: dict[str, Any]


def function_schema(
    func: Callable[..., Any], *, name: str | None = None, description: str | None = None
) -> FunctionSchema:
    """Build the schema of a typed, documented function; raise ToolRegistrationError naming it otherwise."""
    if not callable(func):
        raise ToolRegistrationError(f"cannot register {func!r} as a tool: expected a function")
    qualname = getattr(func, "__qualname__", repr(func))
    tool_name = name if name is not None else getattr(func, "__name__", "")
    label = f"tool {tool_name!r} (function {qualname})"
    if not isinstance(tool_name, str) or not _NAME_RE.match(tool_name):
        raise ToolRegistrationError(
            f"cannot register {label}: a tool name must be 1-64 characters of letters, digits, '_', '.' "
            "or '-' and start with a letter or '_'"
        )
    if tool_name in RESERVED_NAMES:
        raise ToolRegistrationError(f"cannot register {label}: the name {tool_name!r} is reserved by the prompt format")
    doc_description, doc_params = parse_docstring(inspect.getdoc(func))
    tool_description = (description if description is not None else doc_description).strip()
    if not tool_description:
        raise ToolRegistrationError(
            f"cannot register {label}: it has no docstring; the docstring's first paragraph tells the model "
            "what the tool does (or pass description=...)"
        )
    try:
        signature = inspect.signature(func)
        hints = typing.get_type_hints(func, include_extras=True)
    except (TypeError, ValueError, NameError) as exc:
        hint = " (type hints must name types importable where the function is defined)" if isinstance(exc, NameError) else ""
        raise ToolRegistrationError(f"cannot register {label}: its signature cannot be read: {exc}{hint}") from exc

    fields: dict[str, Any] = {}
    for index, param in enumerate(signature.parameters.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            star = "*" if param.kind == param.VAR_POSITIONAL else "**"
            raise ToolRegistrationError(
                f"cannot register {label}: parameter {star}{param.name} is not allowed; a tool needs explicitly "
                "named, typed parameters so that its schema lists them"
            )
        if param.kind == param.POSITIONAL_ONLY:
            raise ToolRegistrationError(
                f"cannot register {label}: parameter {param.name!r} is positional-only; tools are called with "
                "keyword arguments"
            )
        if param.name not in hints:
            raise ToolRegistrationError(
                f"cannot register {label}: parameter {param.name!r} has no type hint; annotate it, e.g. "
                f"{param.name}: Annotated[str, \"what it is\"]"
            )
        base, text, metadata = _split_annotated(hints[param.name])
        field_infos = [item for item in metadata if isinstance(item, FieldInfo)]
        others = [item for item in metadata if not isinstance(item, FieldInfo)]
        default = param.default
        if isinstance(default, FieldInfo):  # def f(x: int = Field(3, description=...))
            field_infos.append(default)
            default = inspect.Parameter.empty
        kwargs: dict[str, Any] = {}
        has_field_description = any(info.description for info in field_infos)
        param_description = text or (None if has_field_description else doc_params.get(param.name))
        if param_description:
            kwargs["description"] = param_description
        if default is not inspect.Parameter.empty:
            kwargs["default"] = default
        if not _is_safe_field_name(param.name):
            # pydantic reserves names such as "model_*", "_x" or "json"; the alias keeps the real name
            # in the schema and in validation while the model attribute gets a neutral one.
            kwargs["alias"] = param.name
        field_name = param.name if "alias" not in kwargs else f"param_{index}"
        annotation = Annotated[(base, *others, *field_infos)] if (others or field_infos) else base
        fields[field_name] = (annotation, Field(**kwargs))

    model_name = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", tool_name) if part) or "Tool"
    try:
        model = create_model(  # type: ignore[call-overload]
            f"{model_name}Arguments",
            __config__=ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=False),
            **fields,
        )
        schema = compact_schema(model.model_json_schema())
    except Exception as exc:  # pydantic raises several error types for unsupported hints; all mean "cannot register"
        raise ToolRegistrationError(
            f"cannot register {label}: its parameter types cannot be turned into a JSON Schema: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return FunctionSchema(name=tool_name, description=tool_description, model=model, schema=schema)




def valid_tool_name(name: object) -> bool:
    """1-64 letters, digits, '_', '.', '-', starting with a letter or '_' (what a prompt metadata line can hold)."""
    return isinstance(name, str) and bool(_NAME_RE.match(name))
