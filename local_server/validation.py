"""Request bodies: JSON parsing with limits, and a small type language to check them against.

Parsing (:func:`parse_json`) refuses what no ClearML server can store: NaN and ±Infinity, numbers out
of range (an integer outside 64 bits, like Mongo's; a float that overflows to infinity, e.g.
``1e999999``), integers of thousands of digits, lone surrogates (not UTF-8), JSON nested deeper than
:data:`MAX_DEPTH`, and bytes that are not UTF-8. Each refusal is a 400 naming where it was found.

The types (:class:`Spec` and its kinds) follow the request schemas of the real server
(``apiserver/schema/services/*.conf`` of clearml-server). As there, a ``null`` anywhere counts as
"not given" (the real server drops ``None`` values before validating) and fields a schema does not
name are ignored.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from . import errors

MAX_DEPTH = 64
# Decoding JSON is one C call that holds the interpreter lock: a 16 MiB document of a million small
# objects would stop every other client (``/healthz`` included) for seconds, and checking millions of
# values takes many more. A document with more "{", "[" and "," than MAX_ITEMS is scanned first (in
# steps that let other threads run; what is inside strings does not count) and refused when it
# really has more than MAX_ITEMS objects, arrays and elements. (An events batch is checked line by
# line: each line is one event.)
MAX_ITEMS = 250_000
_NEXT = re.compile(r'["{\[,]')
_STRING_END = re.compile(r'["\\]')
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_MAX_INT_DIGITS = 20  # int64 has at most 19 digits (and a sign)


def has_surrogate(text: str) -> bool:
    """True when ``text`` holds a lone surrogate (it cannot be UTF-8); fast for long strings."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class _Refused:
    """A JSON value the parser met but no server can store; reported with its path by the walk."""

    def __init__(self, text: str, why: str) -> None:
        self.text = text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"
        self.why = why


def _parse_int(text: str) -> int | _Refused:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        return _Refused(text, "integer out of the 64-bit range")
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        return _Refused(text, "integer out of the 64-bit range")
    return value


def _parse_float(text: str) -> float | _Refused:
    value = float(text)
    if math.isinf(value):
        return _Refused(text, "number out of range (overflows to infinity)")
    return value


def _parse_constant(text: str) -> _Refused:
    return _Refused(text, "NaN and Infinity are not JSON numbers")


_DECODER = json.JSONDecoder(
    parse_int=_parse_int,
    parse_float=_parse_float,
    parse_constant=_parse_constant,
)


def _decode(text: str) -> Any:
    try:
        return _DECODER.decode(text)
    except RecursionError as exc:
        raise errors.validation(f"JSON nested deeper than {MAX_DEPTH} levels") from exc


def decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.validation(f"request body is not UTF-8 (byte {exc.start})") from exc


def too_many_items(text: str, limit: int = MAX_ITEMS) -> bool:
    """True when ``text`` has more than ``limit`` JSON objects, arrays and commas (outside strings)."""
    if text.count("{") + text.count("[") + text.count(",") <= limit:
        return False
    count, position = 0, 0
    while match := _NEXT.search(text, position):
        position = match.end()
        if match.group() != '"':
            count += 1
            if count > limit:
                return True
            continue
        while end := _STRING_END.search(text, position):  # skip the string, escapes included
            position = end.end() + (1 if end.group() == "\\" else 0)
            if end.group() == '"':
                break
        else:
            return False  # unterminated: the decoder says so
    return False


def parse_json(text: str, where: str = "body") -> Any:
    """One JSON document, checked by :func:`check_clean`; ``where`` names it in errors (and prefixes
    field paths unless it is the whole body)."""
    if too_many_items(text):
        raise errors.validation(f"more than {MAX_ITEMS} JSON values", field=where)
    try:
        value = _decode(text)
    except json.JSONDecodeError as exc:
        raise errors.validation(f"malformed JSON {where}: {exc}") from exc
    check_clean(value, "" if where == "body" else where)
    return value


def check_clean(value: Any, root: str = "") -> None:
    """Refuse numbers and strings a server cannot store, and nesting deeper than :data:`MAX_DEPTH`."""
    stack: list[tuple[Any, str, int]] = [(value, root, 0)]
    while stack:
        item, path, depth = stack.pop()
        where = path or "body"
        if depth > MAX_DEPTH:
            raise errors.validation(f"JSON nested deeper than {MAX_DEPTH} levels", field=where)
        if isinstance(item, str):
            if has_surrogate(item):
                raise errors.validation("lone surrogate in a string (not UTF-8)", field=where)
        elif isinstance(item, _Refused):
            raise errors.validation(f"{item.why}: {item.text}", field=where)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise errors.validation("NaN and Infinity are refused", field=where)
        elif isinstance(item, dict):
            for key, sub in item.items():
                if has_surrogate(key):
                    raise errors.validation("lone surrogate in a key (not UTF-8)", field=where)
                stack.append((sub, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(item, list):
            for i, sub in enumerate(item):
                stack.append((sub, f"{path}[{i}]", depth + 1))


# ---------------------------------------------------------------------------- the type language


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class Spec:
    """What a value must be; ``None`` is always accepted (it means "not given")."""

    expected = "a value"

    def check(self, value: Any, path: str) -> None:
        if value is not None and not self.accepts(value):
            raise errors.validation(f"{path} must be {self.expected}, got {_kind(value)}", field=path)
        if value is not None:
            self.check_inside(value, path)

    def accepts(self, value: Any) -> bool:
        return True

    def check_inside(self, value: Any, path: str) -> None:
        return None


class _Str(Spec):
    expected = "a string"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str)


class _Bool(Spec):
    expected = "a boolean"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)


@dataclass
class Int(Spec):
    minimum: int | None = None
    maximum: int | None = None

    @property
    def expected(self) -> str:  # type: ignore[override]
        bounds = []
        if self.minimum is not None:
            bounds.append(f">= {self.minimum}")
        if self.maximum is not None:
            bounds.append(f"<= {self.maximum}")
        return "an integer" + (f" ({', '.join(bounds)})" if bounds else "")

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int):
            return False
        return (self.minimum is None or value >= self.minimum) and (
            self.maximum is None or value <= self.maximum
        )


class _Num(Spec):
    expected = "a number"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)


class _Obj(Spec):
    expected = "an object"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, dict)


class Enum(Spec):
    def __init__(self, *values: str) -> None:
        self.values = values
        self.expected = f"one of {', '.join(values)}"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.values


@dataclass
class ListOf(Spec):
    """A list of ``item``; with ``lone`` a single item is taken as a list of one (filters, tags)."""

    item: Spec
    lone: bool = False

    @property
    def expected(self) -> str:  # type: ignore[override]
        return f"a list or {self.item.expected}" if self.lone else "a list"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, list) or (self.lone and self.item.accepts(value))

    def check_inside(self, value: Any, path: str) -> None:
        if isinstance(value, list):
            for i, item in enumerate(value):
                self.item.check(item, f"{path}[{i}]")
        else:
            self.item.check_inside(value, path)


@dataclass
class MapOf(Spec):
    """An object whose every value is ``value`` (any keys)."""

    value: Spec
    expected: str = "an object"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, dict)

    def check_inside(self, value: Any, path: str) -> None:
        for key, item in value.items():
            self.value.check(item, f"{path}.{key}")


@dataclass
class Shape(Spec):
    """An object with typed known fields (others are ignored) and required ones."""

    fields: dict[str, Spec]
    required: tuple[str, ...] = ()
    expected: str = "an object"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, dict)

    def check_inside(self, value: Any, path: str) -> None:
        for name in self.required:
            if value.get(name) is None:
                raise errors.missing_field(f"{path}.{name}" if path else name)
        for name, spec in self.fields.items():
            if name in value:
                spec.check(value[name], f"{path}.{name}" if path else name)


class OneOf(Spec):
    def __init__(self, *options: Spec) -> None:
        self.options = options
        self.expected = " or ".join(o.expected for o in options)

    def accepts(self, value: Any) -> bool:
        return any(o.accepts(value) for o in self.options)

    def check_inside(self, value: Any, path: str) -> None:
        first_error: errors.ApiError | None = None
        for option in self.options:
            if not option.accepts(value):
                continue
            try:
                option.check_inside(value, path)
                return
            except errors.ApiError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error


STR = _Str()
BOOL = _Bool()
INT = Int(INT64_MIN, INT64_MAX)
NUM = _Num()
OBJ = _Obj()
ANY = Spec()


@dataclass
class Request:
    """The request of one endpoint: its fields and the ones it cannot do without."""

    fields: dict[str, Spec] = field(default_factory=dict)
    required: tuple[str, ...] = ()

    def check(self, body: dict[str, Any]) -> None:
        missing = [name for name in self.required if body.get(name) in (None, "")]
        if missing:
            raise errors.missing_field(*missing)
        for name, spec in self.fields.items():
            if name in body:
                spec.check(body[name], name)

    def extend(self, common: dict[str, Spec] | None = None, **fields: Spec) -> Request:
        return Request({**self.fields, **(common or {}), **fields}, self.required)
