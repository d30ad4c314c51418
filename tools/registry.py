"""The tool registry: a typed, documented function becomes a tool whose JSON Schema and argument
validation come from pydantic (hints, `Annotated` / `Field` / `Args:` descriptions, docstring summary).
"""
from __future__ import annotations

import copy
import importlib.util
import inspect
import re
import sys
import threading
import traceback
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from composite.errors import ConfigError, ToolCallError, ToolRegistrationError

if typing.TYPE_CHECKING:
    from composite.toolcall import ToolResult

__all__ = [
    "Tool",
    "ToolRegistry",
    "ToolLoadFailure",
    "tool_from_function",
    "compact_schema",
    "parse_docstring",
    "loading_registry",
]

# The dialect reads a tool name from the metadata line; "interpreter" there means code, not a tool.
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_RESERVED_NAMES = {"interpreter", "tool_call"}
_SECTION_RE = re.compile(r"^([A-Z][A-Za-z ]*):\s*$")
_ARGS_HEADERS = {"Args", "Arguments", "Parameters", "Params"}
_ARG_LINE_RE = re.compile(r"^\*{0,2}([A-Za-z_][A-Za-z0-9_]*)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")


@dataclass
class Tool:
    """One registered tool: `model` validates a call's arguments, `schema` is what the model is shown."""

    name: str
    description: str
    func: Callable[..., Any]
    model: type[BaseModel]
    schema: dict[str, Any]

    def chatglm3(self) -> dict[str, Any]:
        """{"name", "description", "parameters"}; a copy, so callers may edit it."""
        return {"name": self.name, "description": self.description, "parameters": copy.deepcopy(self.schema)}

    def openai(self) -> dict[str, Any]:
        return {"type": "function", "function": self.chatglm3()}


@dataclass
class ToolLoadFailure:
    """A tool file that could not be loaded; the other files of the folder still load."""

    path: Path
    error: str
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.path.name}: {self.error}"


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


def tool_from_function(
    func: Callable[..., Any], *, name: str | None = None, description: str | None = None
) -> Tool:
    """Build a Tool from a typed, documented function; raise ToolRegistrationError naming it otherwise."""
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
    if tool_name in _RESERVED_NAMES:
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
    return Tool(name=tool_name, description=tool_description, func=func, model=model, schema=schema)


# ---------------------------------------------------------------------------------------------------
# the registry

_loading_lock = threading.RLock()  # one folder import at a time
_loading = threading.local()  # per thread, so a register_tool elsewhere is not redirected


def _loading_stack() -> list["ToolRegistry"]:
    if not hasattr(_loading, "stack"):
        _loading.stack = []
    return _loading.stack


def loading_registry() -> "ToolRegistry | None":
    """The registry whose load_folder is importing a file in this thread (so `@register_tool` lands there)."""
    stack = _loading_stack()
    return stack[-1] if stack else None


class ToolRegistry:
    """A set of tools by name. Tests and apps create their own; `tools.default_registry` holds the built-ins."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._lock = threading.RLock()

    # registration --------------------------------------------------------------------------------

    def register(
        self, func: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None
    ) -> Any:
        """Register func as a tool; usable as `@registry.register` and `@registry.register(name=...)`.

        Returns the function unchanged so it stays callable as plain Python.
        """
        if func is None:
            return lambda f: self.register(f, name=name, description=description)
        self.add(tool_from_function(func, name=name, description=description))
        return func

    def add(self, tool: Tool) -> Tool:
        """Add a built Tool; a name already taken raises ToolRegistrationError."""
        with self._lock:
            if tool.name in self._tools:
                existing = self._tools[tool.name].func
                raise ToolRegistrationError(
                    f"cannot register tool {tool.name!r} (function {getattr(tool.func, '__qualname__', tool.func)}): "
                    f"the name is already taken by function {getattr(existing, '__module__', '?')}."
                    f"{getattr(existing, '__qualname__', existing)}; pass name=... to register it under another name"
                )
            self._tools[tool.name] = tool
        return tool

    def unregister(self, name: str) -> None:
        with self._lock:
            self.get(name)
            del self._tools[name]

    # lookup --------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> Tool:
        tool = self._tools.get(name)
        if tool is None:
            available = ", ".join(self._tools) or "(none)"
            raise ToolCallError(f"unknown tool {name!r}; available tools: {available}")
        return tool

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"ToolRegistry({self.names()!r})"

    def select(self, enabled: Iterable[str] | None = None) -> list[Tool]:
        """The tools in registration order, restricted to `enabled` names (None: all)."""
        if enabled is None:
            return list(self)
        wanted = [enabled] if isinstance(enabled, str) else list(enabled)
        unknown = [name for name in wanted if name not in self._tools]
        if unknown:
            raise ConfigError(
                f"unknown tool(s) {', '.join(map(repr, unknown))}; available tools: {', '.join(self._tools) or '(none)'}"
            )
        chosen = set(wanted)
        return [tool for tool in self if tool.name in chosen]

    def chatglm3_tools(self, enabled: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The tools as ChatGLM3 lists them in the system prompt: name, description, parameters."""
        return [tool.chatglm3() for tool in self.select(enabled)]

    def openai_tools(self, enabled: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The tools in OpenAI's function-calling format."""
        return [tool.openai() for tool in self.select(enabled)]

    # calling -------------------------------------------------------------------------------------

    def call(self, name: str, arguments: dict[str, Any], timeout: float | None = 30.0) -> "ToolResult":
        """Validate arguments and run the tool with a timeout; model mistakes give ok=False, never raise."""
        from composite.toolcall import call_tool

        return call_tool(self, name, arguments, timeout=timeout)

    # user folders --------------------------------------------------------------------------------

    def load_folder(self, path: str | Path) -> list[ToolLoadFailure]:
        """Import every .py file of a folder (sorted, not recursive) with `@register_tool` landing here.

        A file that fails to import or register is recorded with its name and rolled back (none of its
        tools stay registered); the other files still load. Returns the failures.
        """
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"tool folder {str(folder)!r} does not exist or is not a directory")
        failures: list[ToolLoadFailure] = []
        for file in sorted(folder.glob("*.py")):
            if file.name.startswith("."):
                continue
            failure = self._load_file(file)
            if failure is not None:
                failures.append(failure)
        return failures

    def _load_file(self, file: Path) -> ToolLoadFailure | None:
        module_name = f"_composite_user_tools_{abs(hash(str(file.resolve())))}_{re.sub(r'[^A-Za-z0-9_]', '_', file.stem)}"
        before = set(self._tools)
        with _loading_lock:
            _loading_stack().append(self)
            try:
                spec = importlib.util.spec_from_file_location(module_name, file)
                if spec is None or spec.loader is None:
                    return ToolLoadFailure(file, "cannot be imported as a Python module")
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            except (Exception, SystemExit) as exc:  # user code may raise anything; record it, load the rest
                sys.modules.pop(module_name, None)
                with self._lock:
                    for added in set(self._tools) - before:
                        del self._tools[added]
                return ToolLoadFailure(file, _describe_load_error(exc, file), exc)
            finally:
                _loading_stack().pop()
        return None


def _describe_load_error(exc: BaseException, file: Path) -> str:
    """'Type: message (line N)' with the line in the tool file where it went wrong, when known."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, SyntaxError) and exc.lineno and (exc.filename in (None, str(file))):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == str(file)]
    if lines:
        text += f" (line {lines[-1]})"
    return text
