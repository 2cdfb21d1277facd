"""The ``get_all`` query engine, with the real server's filter semantics.

Per entity a whitelist says which request keys filter and how (unknown keys are ignored, as the
real server does):

- pattern fields (``name``...): a regular expression searched anywhere, case-sensitive (the real
  server compiles it without flags). Patterns run on RE2 (``google-re2``): matching takes time linear
  in the text whatever the pattern, so ``(\\w+)+!x`` against a name of 100,000 characters answers
  at once; RE2 has no backreferences or lookaround, such patterns are a 400;
- list fields (``tags``, ``system_tags``, ``id``, ``status``...): a value or list of values,
  matched as "any of"; ``-x`` (until the first operator) or ``__$not x`` excludes, ``__$all``/``__$and``
  switch to "all of", ``__$any``/``__$or`` back to "any of", ``__$nop`` resets; the first operator (or
  "and" if a value comes first) combines the include/all/exclude groups; ``None`` matches an empty or
  missing field;
- range fields: ``[min, max]`` inclusive, either may be ``None`` (a ``None`` min also matches missing);
- datetime fields: ``">2024-01-01T00:00:00"`` style conditions (``>``, ``>=``, ``<``, ``<=``, none for
  equality; unparseable dates are ignored), or a ``[min, max]`` range;
- equality fields: exact match;
- ``_any_``/``_or_`` and ``_all_``/``_and_``: ``{"fields": [...], "pattern": re}`` (case-insensitive) or
  ``{"datetime": ...}`` (only the entity's datetime fields count).

Then ``search_text``, ordering (``order_by``, ``-`` for descending, ``id`` as the last key; empty values
of the first key come last), paging (``page``/``page_size``, at most 500 a page and 500 by default, or
``scroll_id`` with ``size``) and Mongo-style projection (``only_fields``/``projection``).
All of it follows ``apiserver/database/model/base.py`` (``GetMixin``) of clearml-server.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import re2
from dateutil import parser as date_parser

from . import errors

Doc = dict[str, Any]
Predicate = Callable[[Doc], bool]
_MISSING = object()


@dataclass(frozen=True)
class QueryOptions:
    pattern_fields: tuple[str, ...] = ("name",)
    list_fields: tuple[str, ...] = ("tags", "system_tags", "id")
    range_fields: tuple[str, ...] = ()
    datetime_fields: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    text_fields: tuple[str, ...] = ("id", "name")
    # ordering by a field under these prefixes compares strings with numbers in them as numbers
    # ("2" < "10"), like the real server's numeric collation for user-defined values
    numeric_order: tuple[str, ...] = ()


TASK_OPTIONS = QueryOptions(
    pattern_fields=("name", "comment", "report"),
    list_fields=(
        "id",
        "user",
        "tags",
        "system_tags",
        "type",
        "status",
        "project",
        "parent",
        "hyperparams.*",
        "execution.queue",
        "models.input.model",
    ),
    range_fields=("created", "started", "active_duration", "last_metrics.*", "last_iteration"),
    datetime_fields=("status_changed", "last_update", "last_change"),
    fields=("runtime.*",),
    text_fields=("id", "name", "comment", "script.repository"),
    numeric_order=("execution.parameters.", "last_metrics.", "hyperparams."),
)
MODEL_OPTIONS = QueryOptions(
    pattern_fields=("name", "comment"),
    list_fields=(
        "tags",
        "system_tags",
        "framework",
        "uri",
        "id",
        "user",
        "project",
        "task",
        "parent",
        "metadata.*",
    ),
    range_fields=("created", "last_metrics.*", "last_iteration"),
    datetime_fields=("last_update", "last_change"),
    fields=("ready",),
    text_fields=("id", "name", "comment", "uri"),
)
PROJECT_OPTIONS = QueryOptions(
    pattern_fields=("name", "basename", "description"),
    list_fields=("tags", "system_tags", "id", "parent", "path"),
    range_fields=("last_update",),
    text_fields=("id", "name", "description"),
)
QUEUE_OPTIONS = QueryOptions(
    pattern_fields=("name",), list_fields=("tags", "system_tags", "id", "metadata.*")
)


# ---------------------------------------------------------------------------- values and paths


def now_iso() -> str:
    return format_date(datetime.now(UTC))


def format_date(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_date(text: str) -> str:
    if len(text) > 64:
        raise errors.fields_value("not a date", value=text[:64] + "...")
    try:
        return format_date(date_parser.isoparse(text))
    except (ValueError, OverflowError):
        try:
            return format_date(date_parser.parse(text))
        except (ValueError, OverflowError) as exc:
            raise errors.fields_value("not a date", value=text) from exc


_ESCAPES = (("%2E", "."), ("%24", "$"), ("%_%_", "__"))


def _unescape_key(part: str) -> str:
    """A key escaped the way the real server's ``ParameterKeyEscaper`` does (``sec%2Etion`` is the
    key ``sec.tion``): clients address hyperparameter and configuration names holding dots so."""
    if "%" not in part:
        return part
    pieces = []
    for piece in part.split("%%"):
        for escaped, plain in _ESCAPES:
            piece = piece.replace(escaped, plain)
        pieces.append(piece)
    key = "%".join(pieces)
    return "_" + key[2:] if key.startswith("%_") else key


@functools.lru_cache(maxsize=4096)
def path_parts(path: str) -> tuple[str, ...]:
    """The keys of a dotted path, each unescaped (see :func:`_unescape_key`)."""
    return tuple(_unescape_key(p) for p in path.split("."))


def get_path(doc: Any, path: str) -> Any:
    """Value at a dotted path; lists along the way are flattened like Mongo does."""
    current: Any = doc
    for part in path_parts(path):
        if isinstance(current, dict):
            current = current.get(part, _MISSING)
        elif isinstance(current, list):
            values = [get_path(item, part) for item in current if isinstance(item, dict)]
            current = [v for v in values if v is not _MISSING]
        else:
            return _MISSING
        if current is _MISSING:
            return _MISSING
    return current


def _as_list(value: Any) -> list[Any]:
    if value is _MISSING or value is None:
        return []
    if isinstance(value, list):
        flat: list[Any] = []
        for v in value:
            flat.extend(v if isinstance(v, list) else [v])
        return flat
    return [value]


def _fields_matching(pattern: str, request: dict[str, Any]) -> list[str]:
    if pattern.endswith("*"):
        prefix = pattern[:-1]
        return [k for k in request if k.startswith(prefix)]
    return [pattern] if pattern in request else []


MAX_PATTERN_LENGTH = 10_000


class Regex:
    """A compiled RE2 pattern (linear-time matching) searched in strings. RE2's Python binding costs
    about 2 us a search, ten times Python's ``re``: results for short texts are remembered (polls ask
    the same pattern of the same names again and again)."""

    _REMEMBERED = 20_000  # results kept per pattern (texts up to 1 KiB)

    def __init__(self, pattern: str, ignore_case: bool = False) -> None:
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise errors.invalid_regex(pattern[:100] + "...", f"longer than {MAX_PATTERN_LENGTH} characters")
        options = re2.Options()
        options.log_errors = False
        options.case_sensitive = not ignore_case
        try:
            self._regex = re2.compile(pattern, options)
        except re2.error as exc:
            raise errors.invalid_regex(pattern[:200], _re2_message(exc)) from exc
        self._seen: dict[str, bool] = {}

    def search(self, text: str) -> bool:
        found = self._seen.get(text)
        if found is not None:
            return found
        try:
            found = self._regex.search(text) is not None
        except UnicodeEncodeError:  # a lone surrogate (refused on input; only in data of old versions)
            found = False
        if len(text) <= 1024:
            if len(self._seen) >= self._REMEMBERED:
                self._seen.clear()
            self._seen[text] = found
        return found


def _re2_message(exc: Exception) -> str:
    message = exc.args[0] if exc.args else exc
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return str(message)


@functools.lru_cache(maxsize=64)
def compile_regex(pattern: str, ignore_case: bool = False) -> Regex:
    return Regex(pattern, ignore_case)


# ---------------------------------------------------------------------------- predicates


def _pattern_predicate(path: str, pattern: str, ignore_case: bool = False) -> Predicate:
    if not isinstance(pattern, str):
        raise errors.fields_value("pattern must be a string", field=path)
    regex = compile_regex(pattern, ignore_case)

    def match(doc: Doc) -> bool:
        return any(isinstance(v, str) and regex.search(v) for v in _as_list(get_path(doc, path)))

    return match


_LIST_OPERATORS = {"__$all": "all", "__$and": "all", "__$any": "any", "__$or": "any"}


def _present_values(path: str) -> Callable[[Doc], set[Any]]:
    """The hashable values at ``path`` (lists flattened) as a set. A top-level list of scalars, such
    as ``tags`` (most list filters, and every document of a scan), takes a shortcut: ``set(value)``."""
    parts = path_parts(path)

    def general(doc: Doc) -> set[Any]:
        return {v for v in _as_list(get_path(doc, path)) if isinstance(v, Hashable)}

    if len(parts) != 1:
        return general
    key = parts[0]

    def present(doc: Doc) -> set[Any]:
        value = doc.get(key) if isinstance(doc, dict) else None
        if type(value) is list:
            try:
                return set(value)
            except TypeError:  # dicts or nested lists inside: flattened and filtered below
                pass
        return general(doc)

    return present


def list_predicate(path: str, data: Any) -> Predicate:
    """A list-field condition, as the real server's ``NewListFieldBucketHelper`` builds it: values go
    to "in" (any-of context), "all" (all-of context) or "nin" (excluded) groups, combined with the first
    operator seen ("and" when a value comes first); ``None`` also accepts an empty or missing field."""
    values = data if isinstance(data, list | tuple) else [data]
    actions: dict[str, set[Any]] = {"in": set(), "all": set(), "nin": set()}
    global_op: str | None = None
    context = "any"
    legacy = True  # "-x" excludes until the first operator (and again after "__$nop")
    negate = False
    allow_empty = False
    for value in values:
        if value is not None and not isinstance(value, str):
            raise errors.fields_value("invalid value type, string expected", field=path, value=str(value))
        if value is not None and value.startswith("__$") and value != "__$nop":
            if negate:
                raise errors.fields_value("value is expected after", field=path, operator="__$not")
            if value == "__$not":
                negate = True
                continue
            if value not in _LIST_OPERATORS:
                raise errors.fields_value("unsupported operator", field=path, operator=value)
            context = _LIST_OPERATORS[value]
            legacy = False
            global_op = global_op or context
            continue
        global_op = global_op or "all"
        if value is None:
            negate = False
            allow_empty = True
            continue
        if value == "__$nop":
            negate, context, legacy = False, "any", True
            continue
        include = not negate
        negate = False
        if include and legacy and value.startswith("-"):
            value, include = value[1:], False
            if not value:
                raise errors.fields_value("missing value after the exclude prefix -", field=path)
        actions["nin" if not include else "all" if context == "all" else "in"].add(value)
    if negate:
        raise errors.fields_value("value is expected after", field=path, operator="__$not")
    combine_all = (global_op or "all") == "all"
    in_vals, all_vals, nin_vals = actions["in"], actions["all"], actions["nin"]
    present_in = _present_values(path)

    def match(doc: Doc) -> bool:
        present = present_in(doc)
        checks = []
        if in_vals:
            checks.append(bool(present & in_vals))
        if all_vals:
            checks.append(all_vals <= present)
        if nin_vals:
            checks.append(not (present & nin_vals))
        if not allow_empty:
            return (all(checks) if combine_all else any(checks)) if checks else True
        # "field is empty" is OR-ed to the (possibly empty, then absent) condition
        return not present or (bool(checks) and (all(checks) if combine_all else any(checks)))

    return match


_FILTER_KEYS = frozenset({"any", "all", "op"})
_FILTER_LIST_KEYS = frozenset({"include", "exclude"})


def _empty_check(include: bool) -> Callable[[set[Any]], bool]:
    return (lambda present: not present) if include else (lambda present: bool(present))


def _set_check(wanted: set[Any], is_any: bool, include: bool) -> Callable[[set[Any]], bool]:
    """``any``: has one of (include) / lacks one of (exclude); ``all``: has all / has none."""
    if is_any:
        return (lambda p: bool(p & wanted)) if include else (lambda p: not wanted <= p)
    return (lambda p: wanted <= p) if include else (lambda p: not p & wanted)


def list_filter_predicate(path: str, data: Any) -> Predicate:
    """A ``filters`` condition of ``get_all_ex`` (the real server's ``ListQueryFilter``):
    ``{"any": {"include": [...], "exclude": [...]}, "all": {...}, "op": "and" | "or"}``. In ``any``
    an item matches when it has one of ``include`` or lacks one of ``exclude``; in ``all`` when it has
    every ``include`` and none of ``exclude``; ``None`` among the values stands for an empty list
    (included: empty; excluded: not empty). ``op`` combines ``any`` and ``all`` ("and" by default)."""
    if not isinstance(data, dict):
        raise errors.validation("invalid filter for field, dictionary expected", field=path, value=str(data))
    unknown = set(data) - _FILTER_KEYS
    op = data.get("op", "and")
    if unknown or op not in ("and", "or"):
        raise errors.validation("invalid filter", field=path, value=str(data))
    groups: list[tuple[bool, list[Callable[[set[Any]], bool]]]] = []
    for name, is_any in (("any", True), ("all", False)):
        cond = data.get(name)
        if cond is None:
            continue
        if not isinstance(cond, dict) or set(cond) - _FILTER_LIST_KEYS:
            raise errors.validation("invalid filter", field=path, value=str(data))
        checks: list[Callable[[set[Any]], bool]] = []
        for key, include in (("include", True), ("exclude", False)):
            values = cond.get(key) or []
            if not isinstance(values, list) or any(v is not None and not isinstance(v, str) for v in values):
                raise errors.validation("invalid filter values", field=path, value=str(values))
            if None in values:
                checks.append(_empty_check(include))
            wanted = {v for v in values if v is not None}
            if wanted:
                checks.append(_set_check(wanted, is_any, include))
        if checks:
            groups.append((is_any, checks))

    def match(doc: Doc) -> bool:
        present = {v for v in _as_list(get_path(doc, path)) if isinstance(v, Hashable)}
        results = [(any if is_any else all)(c(present) for c in checks) for is_any, checks in groups]
        if not results:
            return True
        return all(results) if op == "and" else any(results)

    return match


def _range_predicate(path: str, data: Any) -> Predicate:
    if not isinstance(data, list | tuple) or len(data) != 2:
        raise errors.validation(f"min and max values should be specified for range field {path}")
    low, high = data
    if low is None and high is None:
        raise errors.validation(f"at least one of min or max should be provided for field {path}")

    def match(doc: Doc) -> bool:
        value = get_path(doc, path)
        if value is _MISSING or value is None:
            return low is None
        try:
            return (low is None or value >= low) and (high is None or value <= high)
        except TypeError:
            return False

    return match


_DATE_OPS: dict[str, Callable[[str, str], bool]] = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "": lambda a, b: a == b,
}
_DATE_CONDITION = re.compile(r"^(?P<prefix>>=|>|<=|<)?(?P<value>.*)$", re.DOTALL)


def _datetime_predicate(path: str, data: Any) -> Predicate:
    """``">iso"`` style conditions (all must hold; an unparseable date is ignored, a second condition
    with the same operator replaces the first), or ``[min, max]`` when neither has an operator."""
    conditions = data if isinstance(data, list) else [data]
    if any(c is not None and not isinstance(c, str) for c in conditions):
        raise errors.fields_value("failed parsing query field", field=path, error="string dates expected")
    if len(conditions) == 2 and not any(c and c.startswith(("<", ">")) for c in conditions):
        low, high = (parse_date(c) if c else None for c in conditions)
        return _range_predicate(path, [low, high])
    checks: dict[str, str] = {}
    for cond in conditions:
        if cond is None:
            raise errors.fields_value("failed parsing query field", field=path, error="date expected")
        m = _DATE_CONDITION.match(cond)
        if not m:
            continue
        try:
            checks[m.group("prefix") or ""] = parse_date(m.group("value"))
        except errors.ApiError:
            continue

    def match(doc: Doc) -> bool:
        if not checks:
            return True  # nothing parseable: no condition at all
        value = get_path(doc, path)
        if not isinstance(value, str):
            return False
        return all(_DATE_OPS[op](value, ref) for op, ref in checks.items())

    return match


def _equality_predicate(path: str, data: Any) -> Predicate:
    def match(doc: Doc) -> bool:
        return get_path(doc, path) == data

    return match


def _combined(subs: list[Predicate], combine: Callable[[Iterable[bool]], bool]) -> Predicate:
    return lambda doc: combine(p(doc) for p in subs)


def build_filter(request: dict[str, Any], options: QueryOptions) -> list[Predicate]:
    """Predicates for every filtering key the entity's whitelist accepts."""
    preds: list[Predicate] = []
    filters = request.get("filters")
    if filters is not None and not isinstance(filters, dict):
        raise errors.fields_value("invalid value type, string expected", field="filters", value=str(filters))
    filtered: set[str] = set()
    for spec in options.list_fields:
        for name in _fields_matching(spec, filters or {}):
            if filters[name] is not None:  # type: ignore[index]
                preds.append(list_filter_predicate(name, filters[name]))  # type: ignore[index]
                filtered.add(name)
    for name in options.pattern_fields:
        pattern = request.get(name)
        if pattern:
            if not isinstance(pattern, str):
                raise errors.fields_value("pattern must be a string", field=name)
            preds.append(_pattern_predicate(name, pattern))
    for spec in options.list_fields:
        for name in _fields_matching(spec, request):
            if request[name] is not None and name not in filtered:
                preds.append(list_predicate(name, request[name]))
    for spec in options.range_fields:
        for name in _fields_matching(spec, request):
            if request[name] is not None:
                preds.append(_range_predicate(name, request[name]))
    for spec in options.fields:
        for name in _fields_matching(spec, request):
            if request[name] is not None:
                preds.append(_equality_predicate(name, request[name]))
    for name in options.datetime_fields:
        if request.get(name) is not None:
            preds.append(_datetime_predicate(name, request[name]))
    for key, combine in (("_any_", any), ("_or_", any), ("_all_", all), ("_and_", all)):
        multi = request.get(key)
        if multi is None:
            continue
        if (
            not isinstance(multi, dict)
            or "fields" not in multi
            or set(multi) - {"fields", "pattern", "datetime"}
            or (multi.get("pattern") is None) == (multi.get("datetime") is None)
        ):
            raise errors.fields_value(
                "failed parsing query field", field=key, error="expected {fields, pattern | datetime}"
            )
        if not isinstance(multi["fields"], list) or not all(isinstance(f, str) for f in multi["fields"]):
            raise errors.fields_value("fields must be a list of strings", field=f"{key}.fields")
        if not multi["fields"]:
            continue
        if multi.get("pattern") is not None:
            subs = [_pattern_predicate(f, multi["pattern"], ignore_case=True) for f in multi["fields"]]
        else:
            date_fields = [f for f in multi["fields"] if f in options.datetime_fields]
            if not date_fields:
                continue
            subs = [_datetime_predicate(f, multi["datetime"]) for f in date_fields]
        preds.append(_combined(subs, combine))
    text = request.get("search_text")
    if text:
        if not isinstance(text, str):
            raise errors.validation("search_text must be a string", field="search_text")
        needle = text.lower()
        text_fields = options.text_fields
        preds.append(
            lambda doc: any(
                isinstance(v, str) and needle in v.lower()
                for f in text_fields
                for v in _as_list(get_path(doc, f))
            )
        )
    return preds


# ---------------------------------------------------------------------------- ordering and paging


_DIGITS = re.compile(r"(\d+)")


def _numeric_text_key(text: str) -> tuple[tuple[int, Any], ...]:
    """A string's key under a numeric collation: runs of digits compare as numbers ("2" < "10")."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(text) if part)


def _sort_key(value: Any, descending: bool = False, numeric: bool = False) -> tuple[int, Any]:
    """Mongo's sort order: null < numbers < strings < objects < arrays < booleans; an array sorts by its
    smallest element ascending and its largest descending, an empty array before null. With
    ``numeric`` strings compare their digit runs as numbers."""
    if value is _MISSING or value is None:
        return (1, 0)
    if isinstance(value, list):
        keys = [_sort_key(v, descending, numeric) for v in value]
        if not keys:
            return (0, 0)
        return max(keys) if descending else min(keys)
    if isinstance(value, bool):
        return (8, int(value))
    if isinstance(value, int | float):
        return (2, value)
    if isinstance(value, str):
        return (3, _numeric_text_key(value)) if numeric else (3, value)
    if isinstance(value, dict):
        if numeric:  # field by field in stored order, values under the numeric collation
            return (4, tuple((str(k), _sort_key(v, descending, numeric)) for k, v in value.items()))
        return (4, json.dumps(value, sort_keys=True, default=str))
    return (5, str(value))


def _sort_key_of(path: str, descending: bool, numeric: bool = False) -> Callable[[Doc], tuple[int, Any]]:
    return lambda doc: _sort_key(get_path(doc, path), descending, numeric)


def _is_empty(value: Any) -> bool:
    return value is _MISSING or value is None or value == "" or value == []


def order(
    docs: list[Doc], order_by: Sequence[str] | str | None, numeric_prefixes: Sequence[str] = ()
) -> list[Doc]:
    """Sort like the real server: ``id`` is added as the last key, and when the first key is ascending
    the documents where it is missing or empty come after all others. When the first key starts with
    one of ``numeric_prefixes`` strings are compared with a numeric collation (all keys)."""
    if order_by is not None and not isinstance(order_by, str | list | tuple):
        raise errors.validation("order_by must be a list of field names", field="order_by")
    keys = [order_by] if isinstance(order_by, str) else list(order_by or [])
    if not all(isinstance(k, str) for k in keys):
        raise errors.validation("order_by must be a list of field names", field="order_by")
    keys = [k for k in keys if k]
    if not keys:
        return docs
    if "id" not in keys and "-id" not in keys:
        keys.append("id")

    first = next((k for k in keys if not k.startswith("$")), "")
    numeric = any(first.lstrip("-+").startswith(p) for p in numeric_prefixes)

    def sort(items: list[Doc]) -> list[Doc]:
        result = list(items)
        for key in reversed(keys):  # stable sorts from the least significant key
            descending = key.startswith("-")
            path = key.lstrip("-+")
            result.sort(key=_sort_key_of(path, descending, numeric), reverse=descending)
        return result

    if first and not first.startswith("-"):
        path = first.lstrip("+")
        filled = [d for d in docs if not _is_empty(get_path(d, path))]
        empty = [d for d in docs if _is_empty(get_path(d, path))]
        return sort(filled) + sort(empty)
    return sort(docs)


@dataclass
class Page:
    items: list[Doc]
    scroll_id: str | None = None
    total: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


MAX_PAGE_SIZE = 500  # the real server's services._mongo.max_page_size
SCROLL_EXPIRY_SECONDS = 600.0
_scrolls: dict[str, tuple[int, float]] = {}  # scroll id -> (position, expiry): the server keeps it in Redis
_scrolls_lock = threading.Lock()


def _scroll_size(request: dict[str, Any]) -> int:
    size = request.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise errors.validation(
            "Integer size parameter greater than 1 should be provided when working with scroll"
        )
    return size


def _int_param(request: dict[str, Any], name: str, default: int | None) -> int | None:
    value = request.get(name, default)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise errors.validation(f"{name} must be an integer", field=name)
    return value


def paginate(docs: list[Doc], request: dict[str, Any]) -> Page:
    """``page``/``page_size`` (page 0 and 500 items unless asked otherwise, at most 500), or a scroll:
    with ``scroll_id`` in the request (empty or unknown starts over) the next ``size`` items and the id
    to continue with (the same id: the position is kept here); ``refresh_scroll`` re-reads from the start."""
    total = len(docs)
    scroll_id: str | None = None
    start = request.get("start")
    if "scroll_id" in request:
        size = _scroll_size(request)
        now = time.monotonic()
        with _scrolls_lock:
            for key in [k for k, (_, expiry) in _scrolls.items() if expiry < now]:
                del _scrolls[key]
            requested = request.get("scroll_id")
            if isinstance(requested, str) and requested in _scrolls:
                scroll_id, position = requested, _scrolls[requested][0]
            else:
                scroll_id, position = uuid.uuid4().hex, 0
        if request.get("refresh_scroll"):
            size, position = max(position, size), 0
        chunk = docs[position : position + size]
        with _scrolls_lock:
            _scrolls[scroll_id] = (position + len(chunk), now + SCROLL_EXPIRY_SECONDS)
        return Page(chunk, scroll_id=scroll_id, total=total)
    if start is not None:
        size = _scroll_size(request)
        first = _int_param(request, "start", None) or 0
        return Page(docs[first : first + size], total=total)
    page = _int_param(request, "page", 0)
    page_size = _int_param(request, "page_size", MAX_PAGE_SIZE)
    if page is not None and page < 0:
        raise errors.validation("page must be >=0", field="page")
    if page_size is not None and page_size < 1:
        raise errors.validation("page_size must be >0", field="page_size")
    if page_size is not None:
        page_size = min(page_size, MAX_PAGE_SIZE)
        offset = (page or 0) * page_size
        return Page(docs[offset : offset + page_size], total=total)
    if page is not None:
        raise errors.ApiError(400, 11, "page_size is required when page is requested", field="page_size")
    return Page(docs, total=total)


# ---------------------------------------------------------------------------- projection


def project(doc: Doc, only_fields: Iterable[str] | None) -> Doc:
    """Mongo-style projection. Parents of a requested path that exist in the document are kept
    even when the leaf is absent (``runtime.version`` on ``runtime: {}`` gives ``runtime: {}``)."""
    if isinstance(only_fields, str):
        only_fields = [only_fields]
    if only_fields is not None and (
        not isinstance(only_fields, list | tuple) or not all(isinstance(f, str) for f in only_fields)
    ):
        raise errors.validation("only_fields must be a list of field names", field="only_fields")
    wanted = [f[:-2] if f.endswith(".*") else f for f in (only_fields or []) if f]
    if not wanted:
        return doc
    excludes = [f[1:] for f in wanted if f.startswith("-")]
    includes = [f for f in wanted if not f.startswith("-")]
    if "*" in includes:  # every field (the real server expands "*" to all of the document's fields)
        includes = []
    if includes:
        out: Doc = {"id": doc.get("id")}
        for path in includes:
            _copy_path(doc, out, path_parts(path))
    else:
        import copy

        out = copy.deepcopy(doc)
    for path in excludes:
        _drop_path(out, path_parts(path))
    return out


def _copy_path(src: Any, dst: Doc, parts: Sequence[str]) -> None:
    head, rest = parts[0], parts[1:]
    if not isinstance(src, dict) or head not in src:
        return
    value = src[head]
    if not rest:
        dst[head] = value
        return
    if isinstance(value, dict):
        child = dst.setdefault(head, {})
        if isinstance(child, dict):
            _copy_path(value, child, rest)
    elif isinstance(value, list):
        existing = dst.get(head)
        items: list[Any] = existing if isinstance(existing, list) else [{} for _ in value]
        for src_item, dst_item in zip(value, items, strict=False):
            if isinstance(src_item, dict) and isinstance(dst_item, dict):
                _copy_path(src_item, dst_item, rest)
        dst[head] = items


def _drop_path(doc: Any, parts: Sequence[str]) -> None:
    if not isinstance(doc, dict):
        return
    if len(parts) == 1:
        doc.pop(parts[0], None)
    else:
        _drop_path(doc.get(parts[0]), parts[1:])


def run_query(
    docs: Iterable[Doc],
    request: dict[str, Any],
    options: QueryOptions,
    extra: Sequence[Predicate] = (),
    default_order: Sequence[str] = (),
) -> Page:
    preds = [*build_filter(request, options), *extra]
    matched = [d for d in docs if all(p(d) for p in preds)]
    ordered = order(matched, request.get("order_by") or list(default_order), options.numeric_order)
    page = paginate(ordered, request)
    projection = request.get("projection") or request.get("only_fields")
    page.items = [project(d, projection) for d in page.items]
    return page
