"""The ``get_all`` query engine, with the real server's filter semantics.

Per entity a whitelist says which request keys filter and how (unknown keys are ignored, as the
real server does):

- pattern fields (``name``...): case-insensitive regular expression, searched anywhere;
- list fields (``tags``, ``system_tags``, ``id``, ``status``...): a value or list of values,
  matched as "any of"; ``-x`` or ``__$not x`` excludes, ``__$all``/``__$and`` switch to "all of",
  ``__$any``/``__$or`` back to "any of", ``None`` matches an empty or missing field;
- range fields: ``[min, max]`` inclusive, either may be ``None``;
- datetime fields: ``">2024-01-01T00:00:00"`` style conditions (``>``, ``>=``, ``<``, ``<=``);
- equality fields: exact match;
- ``_any_``/``_or_`` and ``_all_``/``_and_``: ``{"fields": [...], "pattern": re}`` or ``{"datetime": ...}``.

Then ``search_text``, ordering (``order_by``, ``-`` for descending, missing values first), paging
(``page``/``page_size`` or ``size``/``scroll_id``) and Mongo-style projection (``only_fields``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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


TASK_OPTIONS = QueryOptions(
    pattern_fields=("name", "comment"),
    list_fields=(
        "id", "user", "tags", "system_tags", "type", "status", "project", "parent",
        "hyperparams.*", "execution.queue", "models.input.model",
    ),
    range_fields=("created", "started", "active_duration", "last_metrics.*", "last_iteration"),
    datetime_fields=("status_changed", "last_update", "last_change"),
    fields=("runtime.*",),
    text_fields=("id", "name", "comment", "script.repository"),
)
MODEL_OPTIONS = QueryOptions(
    pattern_fields=("name", "comment"),
    list_fields=(
        "tags", "system_tags", "framework", "uri", "id", "user", "project", "task", "parent", "metadata.*",
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
    try:
        return format_date(date_parser.isoparse(text))
    except (ValueError, OverflowError):
        try:
            return format_date(date_parser.parse(text))
        except (ValueError, OverflowError) as exc:
            raise errors.fields_value("not a date", value=text) from exc


def get_path(doc: Any, path: str) -> Any:
    """Value at a dotted path; lists along the way are flattened like Mongo does."""
    current: Any = doc
    for part in path.split("."):
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


def compile_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise errors.invalid_regex(pattern, str(exc)) from exc


# ---------------------------------------------------------------------------- predicates


def _pattern_predicate(path: str, pattern: str) -> Predicate:
    regex = compile_regex(pattern)

    def match(doc: Doc) -> bool:
        return any(isinstance(v, str) and regex.search(v) for v in _as_list(get_path(doc, path)))

    return match


def list_predicate(path: str, data: Any) -> Predicate:
    """A list-field condition: any/all of include values, none of exclude values."""
    values = data if isinstance(data, list | tuple) else [data]
    groups: list[tuple[str, bool, set[Any]]] = []  # (context, include, values)
    context = "any"
    global_op: str | None = None
    allow_empty = False
    negate_next = False
    explicit_ops = False
    for value in values:
        if value is None:
            allow_empty = True
            continue
        if not isinstance(value, str):
            value = str(value) if isinstance(value, int | float | bool) else value
            if not isinstance(value, str):
                raise errors.fields_value("invalid value type, string expected", field=path)
        if value == "__$nop":
            context, negate_next = "any", False
            continue
        if value.startswith("__$"):
            if value == "__$not":
                negate_next = True
                continue
            ops = {"__$all": "all", "__$and": "all", "__$any": "any", "__$or": "any"}
            if value not in ops:
                raise errors.fields_value("unsupported operator", field=path, operator=value)
            context = ops[value]
            explicit_ops = True
            global_op = global_op or context
            continue
        include = not negate_next
        negate_next = False
        if include and not explicit_ops and value.startswith("-") and len(value) > 1:
            value, include = value[1:], False
        groups.append((context, include, {value}))
    if negate_next:
        raise errors.fields_value("value is expected after __$not", field=path)
    combine_all = (global_op or "all") == "all"

    # merge into Mongo-like actions: in / all / nin
    in_vals: set[Any] = set()
    all_vals: set[Any] = set()
    nin_vals: set[Any] = set()
    for ctx, include, vals in groups:
        if not include:
            nin_vals |= vals
        elif ctx == "all":
            all_vals |= vals
        else:
            in_vals |= vals

    def match(doc: Doc) -> bool:
        present = set(_as_list(get_path(doc, path)))
        checks = []
        if in_vals:
            checks.append(bool(present & in_vals))
        if all_vals:
            checks.append(all_vals <= present)
        if nin_vals:
            checks.append(not (present & nin_vals))
        result = (all(checks) if combine_all else any(checks)) if checks else True
        if allow_empty:
            return (result if checks else False) or not present
        return result

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
}


def _datetime_predicate(path: str, data: Any) -> Predicate:
    conditions = data if isinstance(data, list) else [data]
    if len(conditions) == 2 and not any(
        isinstance(c, str) and c[:1] in "<>" for c in conditions if c is not None
    ):
        low, high = (parse_date(c) if c else None for c in conditions)
        return _range_predicate(path, [low, high])
    checks: list[tuple[Callable[[str, str], bool], str]] = []
    for cond in conditions:
        if not isinstance(cond, str):
            continue
        for op in (">=", "<=", ">", "<"):
            if cond.startswith(op):
                checks.append((_DATE_OPS[op], parse_date(cond[len(op) :].strip())))
                break
        else:
            checks.append((lambda a, b: a == b, parse_date(cond)))

    def match(doc: Doc) -> bool:
        value = get_path(doc, path)
        if not isinstance(value, str):
            return False
        return all(op(value, ref) for op, ref in checks)

    return match


def _equality_predicate(path: str, data: Any) -> Predicate:
    def match(doc: Doc) -> bool:
        return get_path(doc, path) == data

    return match


def build_filter(request: dict[str, Any], options: QueryOptions) -> list[Predicate]:
    """Predicates for every filtering key the entity's whitelist accepts."""
    preds: list[Predicate] = []
    for name in options.pattern_fields:
        pattern = request.get(name)
        if pattern:
            if not isinstance(pattern, str):
                raise errors.fields_value("pattern must be a string", field=name)
            preds.append(_pattern_predicate(name, pattern))
    for spec in options.list_fields:
        for name in _fields_matching(spec, request):
            if request[name] is not None:
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
        spec = request.get(key)
        if spec is None:
            continue
        if not isinstance(spec, dict) or not spec.get("fields"):
            raise errors.fields_value("expected {fields, pattern|datetime}", field=key)
        if ("pattern" in spec) == ("datetime" in spec):
            raise errors.fields_value("exactly one of 'pattern' and 'datetime' is needed", field=key)
        if "pattern" in spec:
            subs = [_pattern_predicate(f, spec["pattern"]) for f in spec["fields"]]
        else:
            date_fields = [f for f in spec["fields"] if f in options.datetime_fields]
            if not date_fields:
                continue
            subs = [_datetime_predicate(f, spec["datetime"]) for f in date_fields]
        preds.append(lambda doc, subs=subs, combine=combine: combine(p(doc) for p in subs))
    text = request.get("search_text")
    if text:
        needle = str(text).lower()
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


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is _MISSING or value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, str(value))


def order(docs: list[Doc], order_by: Sequence[str] | str | None) -> list[Doc]:
    keys = [order_by] if isinstance(order_by, str) else list(order_by or [])
    keys = [k for k in keys if k]
    if not keys:
        return docs
    # stable sorts from the least significant key
    result = sorted(docs, key=lambda d: d.get("id", ""))
    for key in reversed(keys):
        descending = key.startswith("-")
        path = key.lstrip("-+")
        result.sort(key=lambda d, p=path: _sort_key(get_path(d, p)), reverse=descending)
    return result


@dataclass
class Page:
    items: list[Doc]
    scroll_id: str | None = None
    total: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def paginate(docs: list[Doc], request: dict[str, Any]) -> Page:
    total = len(docs)
    if request.get("page") is not None or request.get("page_size") is not None:
        page = int(request.get("page") or 0)
        size = int(request.get("page_size") or 500)
        if page < 0 or size < 1:
            raise errors.fields_value("page must be >= 0 and page_size >= 1")
        return Page(docs[page * size : (page + 1) * size], total=total)
    if request.get("size") is not None or request.get("scroll_id"):
        start = 0
        if request.get("scroll_id"):
            try:
                start = int(str(request["scroll_id"]).split(":")[-1])
            except ValueError as exc:
                raise ApiScrollError(str(request["scroll_id"])) from exc
        size = int(request.get("size") or 500)
        chunk = docs[start : start + size]
        return Page(chunk, scroll_id=f"scroll:{start + len(chunk)}", total=total)
    return Page(docs, total=total)


class ApiScrollError(errors.ApiError):
    def __init__(self, scroll_id: str) -> None:
        super().__init__(400, 1104, "Invalid scroll id", scroll_id=scroll_id)


# ---------------------------------------------------------------------------- projection


def project(doc: Doc, only_fields: Iterable[str] | None) -> Doc:
    """Mongo-style projection. Parents of a requested path that exist in the document are kept
    even when the leaf is absent (``runtime.version`` on ``runtime: {}`` gives ``runtime: {}``)."""
    wanted = [f for f in (only_fields or []) if f]
    if not wanted:
        return doc
    excludes = [f[1:] for f in wanted if f.startswith("-")]
    includes = [f for f in wanted if not f.startswith("-")]
    if includes:
        out: Doc = {"id": doc.get("id")}
        for path in includes:
            _copy_path(doc, out, path.split("."))
    else:
        import copy

        out = copy.deepcopy(doc)
    for path in excludes:
        _drop_path(out, path.split("."))
    return out


def _copy_path(src: Any, dst: Doc, parts: list[str]) -> None:
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


def _drop_path(doc: Any, parts: list[str]) -> None:
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
    ordered = order(matched, request.get("order_by") or list(default_order))
    page = paginate(ordered, request)
    page.items = [project(d, request.get("only_fields")) for d in page.items]
    return page
