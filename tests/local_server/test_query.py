"""The get_all query engine on small in-memory documents (no server process).

Each expectation is the real clearml-server's (``apiserver/database/model/base.py``: ``GetMixin``,
``NewListFieldBucketHelper``, ``get_list_field_query``, ``_get_dates_query``, ``validate_paging``,
``_get_many_override_none_ordering``; ``apiserver/utilities/dicts.py``: ``project_dict``), which the SDK,
the agent, serving and the trigger scheduler rely on.
"""

from __future__ import annotations

from typing import Any

import pytest

from local_server import query
from local_server.errors import ApiError
from local_server.query import MODEL_OPTIONS, QUEUE_OPTIONS, TASK_OPTIONS, QueryOptions, run_query

Doc = dict[str, Any]


def ids(docs: list[Doc], request: dict[str, Any], options: QueryOptions = TASK_OPTIONS) -> list[str]:
    return [d["id"] for d in run_query(docs, request, options).items]


def matching(docs: list[Doc], request: dict[str, Any], options: QueryOptions = TASK_OPTIONS) -> set[str]:
    return set(ids(docs, request, options))


def api_error(request: dict[str, Any], docs: list[Doc] | None = None) -> tuple[int, int]:
    with pytest.raises(ApiError) as info:
        run_query(docs if docs is not None else [{"id": "x", "name": "x"}], request, TASK_OPTIONS)
    return info.value.code, info.value.subcode


# ---------------------------------------------------------------------------- patterns

NAMES: list[Doc] = [
    {"id": "a", "name": "Train model", "comment": "first"},
    {"id": "b", "name": "train-v2", "comment": "TRAINING data"},
    {"id": "c", "name": "evaluate", "comment": ""},
]


def test_name_is_an_unanchored_regex_and_case_sensitive_like_the_real_server() -> None:
    # the real server compiles pattern fields without flags (RegexWrapper(pattern)): case-sensitive
    assert matching(NAMES, {"name": "train"}) == {"b"}
    assert matching(NAMES, {"name": "rain"}) == {"a", "b"}, "searched anywhere, not anchored"
    assert matching(NAMES, {"name": "^train-v\\d$"}) == {"b"}
    assert matching(NAMES, {"name": "(?i)^train"}) == {"a", "b"}, "an inline flag asks for case-insensitivity"
    assert matching(NAMES, {"name": ""}) == {"a", "b", "c"}, "an empty pattern is no condition"
    assert matching(NAMES, {"comment": "^TRAIN"}) == {"b"}


def test_any_pattern_over_several_fields_is_case_insensitive() -> None:
    # the _any_/_or_ pattern form is compiled with re.IGNORECASE (and $options "i")
    assert matching(NAMES, {"_any_": {"fields": ["name", "comment"], "pattern": "^TRAIN"}}) == {"a", "b"}
    assert matching(NAMES, {"_all_": {"fields": ["name", "comment"], "pattern": "train"}}) == {"b"}
    assert matching(NAMES, {"_or_": {"fields": [], "pattern": "nothing"}}) == {"a", "b", "c"}, "no fields"


def test_malformed_regex_is_400_21() -> None:
    assert api_error({"name": "train["}) == (400, 21)
    assert api_error({"_any_": {"fields": ["name"], "pattern": "(unclosed"}}) == (400, 21)


def test_malformed_multi_field_parameters_are_400_16() -> None:
    assert api_error({"_any_": "train"}) == (400, 16)
    assert api_error({"_any_": {"fields": ["name"]}}) == (400, 16), "neither pattern nor datetime"
    both = {"fields": ["name"], "pattern": "x", "datetime": ">2024-01-01"}
    assert api_error({"_or_": both}) == (400, 16)
    assert api_error({"_or_": {"fields": ["name"], "pattern": "x", "regex": "y"}}) == (400, 16)


# ---------------------------------------------------------------------------- list fields

TAGGED: list[Doc] = [
    {"id": "a", "tags": ["Production", "v1"], "status": "completed"},
    {"id": "b", "tags": ["v1"], "status": "published"},
    {"id": "c", "tags": [], "status": "created"},
    {"id": "d", "status": "completed"},  # no tags at all
    {"id": "e", "tags": ["Production", "archived"], "status": "failed"},
]


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["Production"], {"a", "e"}),
        ("Production", {"a", "e"}),  # a single value
        (["Production", "v1"], {"a", "b", "e"}),  # "any of" by default
        (["-archived"], {"a", "b", "c", "d"}),  # exclusion also keeps documents without the field
        (["__$not", "archived"], {"a", "b", "c", "d"}),
        (["Production", "-archived"], {"a"}),  # include and exclude groups are AND-ed by default
        (["__$all", "Production", "v1"], {"a"}),
        (["__$and", "Production", "v1"], {"a"}),
        (["__$any", "Production", "v1"], {"a", "b", "e"}),
        (["__$or", "Production", "v1"], {"a", "b", "e"}),
        # the first operator decides how the groups combine: OR here ...
        (["__$any", "v1", "__$not", "archived"], {"a", "b", "c", "d"}),
        # ... and AND when a value comes first
        (["-archived", "__$any", "v1"], {"a", "b"}),
        (["__$all", "-archived"], set()),  # after an operator "-x" is a plain value
        (["__$all", "v1", "__$nop", "-archived"], {"a", "b"}),  # __$nop resets: "-x" excludes again
        ([None], {"c", "d"}),  # None: empty or missing
        (["Production", None], {"a", "c", "d", "e"}),
        (["__$not", None], {"c", "d"}),  # a None after __$not drops the negation
        ([], {"a", "b", "c", "d", "e"}),
        (None, {"a", "b", "c", "d", "e"}),  # a None value is no condition
    ],
)
def test_list_field_semantics(tags: Any, expected: set[str]) -> None:
    assert matching(TAGGED, {"tags": tags}) == expected


def test_list_fields_holding_nested_lists_or_objects_are_flattened_and_filtered() -> None:
    # the common case (a list of strings) takes a shortcut; anything else the general path
    docs: list[Doc] = [
        {"id": "flat", "tags": ["x", "y"]},
        {"id": "nested", "tags": [["x"], "z"]},  # flattened one level, as Mongo matches arrays
        {"id": "objects", "tags": [{"x": 1}, "z"]},  # objects are never equal to a string
        {"id": "scalar", "tags": "x"},
        {"id": "null", "tags": None},
    ]
    assert matching(docs, {"tags": ["x"]}) == {"flat", "nested", "scalar"}
    assert matching(docs, {"tags": ["-x"]}) == {"objects", "null"}
    assert matching(docs, {"tags": ["__$all", "x", "z"]}) == {"nested"}
    assert matching(docs, {"tags": [None]}) == {"null"}


def test_list_semantics_apply_to_scalar_fields_too() -> None:
    assert matching(TAGGED, {"status": ["completed", "published"]}) == {"a", "b", "d"}
    assert matching(TAGGED, {"status": "-completed"}) == {"b", "c", "e"}
    assert matching(TAGGED, {"status": ["__$all", "completed"]}) == {"a", "d"}


@pytest.mark.parametrize(
    "tags",
    [
        ["__$not"],  # a value must follow
        ["__$not", "__$all", "x"],
        ["__$xor", "x"],  # unsupported operator
        [5],  # list values must be strings
        ["-"],  # nothing after the exclude prefix
    ],
)
def test_invalid_list_conditions_are_400_16(tags: list[Any]) -> None:
    assert api_error({"tags": tags}, TAGGED) == (400, 16)


def test_wildcard_list_fields_and_unknown_keys() -> None:
    docs: list[Doc] = [
        {"id": "a", "hyperparams": {"General": {"CLEARML_DATASET_ID": {"value": "ds1"}}}},
        {"id": "b", "hyperparams": {"General": {"CLEARML_DATASET_ID": {"value": "ds2"}}}},
        {"id": "c", "metadata": {"stage": {"value": "prod"}}},
    ]
    assert matching(docs, {"hyperparams.General.CLEARML_DATASET_ID.value": ["ds2"]}) == {"b"}
    # keys outside the entity's whitelist are ignored (the trigger scheduler sends "task_types")
    assert matching(docs, {"task_types": ["data_processing"], "bogus": 1}) == {"a", "b", "c"}
    assert matching(docs, {"metadata.stage.value": "prod"}, MODEL_OPTIONS) == {"c"}
    assert matching(docs, {"comment": "x"}, QUEUE_OPTIONS) == {"a", "b", "c"}, "queues have no comment filter"


def test_range_fields_include_bounds_and_a_missing_min_matches_missing_values() -> None:
    docs: list[Doc] = [{"id": "a", "last_iteration": 1}, {"id": "b", "last_iteration": 5}, {"id": "c"}]
    assert matching(docs, {"last_iteration": [1, 5]}) == {"a", "b"}
    assert matching(docs, {"last_iteration": [2, None]}) == {"b"}
    assert matching(docs, {"last_iteration": [None, 1]}) == {"a", "c"}
    assert api_error({"last_iteration": [None, None]}) == (400, 12)
    assert api_error({"last_iteration": [1]}) == (400, 12)


# ---------------------------------------------------------------------------- datetimes

DATED: list[Doc] = [
    {
        "id": "a",
        "last_update": "2024-01-01T00:00:00.000000+00:00",
        "last_change": "2024-01-01T00:00:00.000000+00:00",
    },
    {
        "id": "b",
        "last_update": "2024-01-02T00:00:00.000000+00:00",
        "last_change": "2024-01-05T00:00:00.000000+00:00",
    },
    {
        "id": "c",
        "last_update": "2024-01-03T12:00:00.000000+00:00",
        "last_change": "2024-01-03T12:00:00.000000+00:00",
    },
    {"id": "d"},
]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (">2024-01-02T00:00:00", {"c"}),  # strictly after
        (">=2024-01-02T00:00:00", {"b", "c"}),
        ("<2024-01-02", {"a"}),
        ("<=2024-01-02T00:00:00Z", {"a", "b"}),
        ([">2024-01-01T00:00:00", "<2024-01-03T00:00:00"], {"b"}),  # every condition holds
        ("2024-01-02T00:00:00", {"b"}),  # no operator: equality
        (["2024-01-02T00:00:00", "2024-01-03T12:00:00"], {"b", "c"}),  # two plain dates: a range
        (">2024-01-02T01:00:00+02:00", {"b", "c"}),  # time zones are honoured (23:00 UTC the day before)
        (">2024-01-01T00:00:00.000001+00:00", {"b", "c"}),  # microseconds count
        (">not-a-date", {"a", "b", "c", "d"}),  # an unparseable date is ignored
    ],
)
def test_datetime_conditions(condition: Any, expected: set[str]) -> None:
    assert matching(DATED, {"last_update": condition}) == expected


def test_any_datetime_is_how_triggers_find_new_events() -> None:
    # TriggerScheduler's query: {"_or_": {"fields": ["last_update", "last_change"], "datetime": [">ref"]}}
    after_jan_2 = [">2024-01-02T00:00:00+00:00"]
    assert matching(DATED, {"_or_": {"fields": ["last_update", "last_change"], "datetime": after_jan_2}}) == {
        "b",
        "c",
    }
    assert matching(
        DATED, {"_any_": {"fields": ["last_update", "last_change"], "datetime": after_jan_2}}
    ) == {
        "b",
        "c",
    }
    assert matching(
        DATED, {"_all_": {"fields": ["last_update", "last_change"], "datetime": after_jan_2}}
    ) == {"c"}
    # only the entity's datetime fields take part; none at all means no condition
    assert matching(DATED, {"_or_": {"fields": ["last_update", "name"], "datetime": after_jan_2}}) == {"c"}
    assert matching(DATED, {"_or_": {"fields": ["name"], "datetime": after_jan_2}}) == {"a", "b", "c", "d"}


# ---------------------------------------------------------------------------- ordering

ORDERED: list[Doc] = [
    {"id": "t1", "name": "b", "created": 3, "tags": ["x"]},
    {"id": "t2", "name": "a", "created": 1},
    {"id": "t3", "created": 2},
    {"id": "t4", "name": "", "created": 2},
    {"id": "t5", "name": "a", "created": None},
]


def test_order_by_ascending_descending_and_several_keys() -> None:
    assert ids(ORDERED, {"order_by": ["-created"]}) == ["t1", "t3", "t4", "t2", "t5"]  # null last descending
    assert ids(ORDERED, {"order_by": "created"}) == ["t2", "t3", "t4", "t1", "t5"]
    # ascending: documents without a value for the first key come after all others; id breaks ties
    assert ids(ORDERED, {"order_by": ["name"]}) == ["t2", "t5", "t1", "t3", "t4"]
    assert ids(ORDERED, {"order_by": ["name", "-created"]}) == ["t2", "t5", "t1", "t3", "t4"]
    # only the first key moves empty values last; later keys sort as Mongo does (null lowest)
    assert ids(ORDERED, {"order_by": ["-name", "created"]}) == ["t1", "t5", "t2", "t4", "t3"]
    assert ids(ORDERED, {"order_by": ["created", "-id"]}) == ["t2", "t4", "t3", "t1", "t5"]


def test_the_latest_first_is_what_the_sdk_asks_for() -> None:
    # Dataset.get / serving auto-update: order_by ["-last_update"] (or "-created") and take the first
    docs = [dict(d, name="sensors") for d in DATED[:3]]
    assert ids(docs, {"name": "^sensors$", "order_by": ["-last_update"], "page": 0, "page_size": 1}) == ["c"]


# ---------------------------------------------------------------------------- paging


def many(n: int) -> list[Doc]:
    return [{"id": f"t{i:04d}", "created": i} for i in range(n)]


def test_page_and_page_size() -> None:
    docs = many(7)
    assert ids(docs, {"page": 0, "page_size": 3}) == ["t0000", "t0001", "t0002"]
    assert ids(docs, {"page": 2, "page_size": 3}) == ["t0006"]
    assert ids(docs, {"page": 3, "page_size": 3}) == []
    assert ids(docs, {"page_size": 2}) == ["t0000", "t0001"], "page 0 when only page_size is given"
    assert ids(docs, {"order_by": ["-created"], "page": 1, "page_size": 2}) == ["t0004", "t0003"]


def test_at_most_500_a_page_and_500_by_default() -> None:
    docs = many(501)
    assert len(ids(docs, {})) == 500
    assert len(ids(docs, {"page_size": 1000})) == 500
    assert ids(docs, {"page": 1, "page_size": 1000}) == ["t0500"]
    assert len(ids(docs, {"size": 1000})) == 500, "size without scroll_id is not paging"


def test_invalid_paging() -> None:
    assert api_error({"page": -1, "page_size": 2}) == (400, 12)
    assert api_error({"page": 0, "page_size": 0}) == (400, 12)
    assert api_error({"page": 1, "page_size": None}) == (400, 11)
    assert api_error({"scroll_id": None}) == (400, 12), "a scroll needs an integer size"
    assert api_error({"scroll_id": None, "size": 0}) == (400, 12)


def test_scroll_continues_with_the_returned_id() -> None:
    docs = many(7)
    first = run_query(docs, {"scroll_id": None, "size": 3}, TASK_OPTIONS)
    assert [d["id"] for d in first.items] == ["t0000", "t0001", "t0002"]
    assert first.scroll_id
    second = run_query(docs, {"scroll_id": first.scroll_id, "size": 3}, TASK_OPTIONS)
    assert [d["id"] for d in second.items] == ["t0003", "t0004", "t0005"]
    assert second.scroll_id == first.scroll_id, "the server keeps the position behind one id"
    third = run_query(docs, {"scroll_id": second.scroll_id, "size": 3}, TASK_OPTIONS)
    assert [d["id"] for d in third.items] == ["t0006"]
    assert run_query(docs, {"scroll_id": third.scroll_id, "size": 3}, TASK_OPTIONS).items == []
    # refresh_scroll reads again from the start up to the current position
    refreshed = run_query(
        docs, {"scroll_id": first.scroll_id, "size": 2, "refresh_scroll": True}, TASK_OPTIONS
    )
    assert len(refreshed.items) == 7
    # an unknown (expired) id starts over with a new one
    fresh = run_query(docs, {"scroll_id": "no-such-scroll", "size": 2}, TASK_OPTIONS)
    assert [d["id"] for d in fresh.items] == ["t0000", "t0001"]
    assert fresh.scroll_id and fresh.scroll_id != "no-such-scroll"


# ---------------------------------------------------------------------------- projection

PROJECTED: list[Doc] = [
    {
        "id": "a",
        "name": "n",
        "runtime": {},
        "execution": {"queue": "q", "parameters": {}},
        "script": {"diff": "x"},
        "models": {"output": [{"name": "m1", "model": "M1"}, {"name": "m2", "model": "M2"}]},
    },
    {"id": "b", "name": "n2", "runtime": {"version": "1.2"}},
    {"id": "c", "name": "n3"},
]


def projected(only: list[str], key: str = "only_fields") -> list[Doc]:
    return run_query(PROJECTED, {key: only}, TASK_OPTIONS).items


def test_only_fields_projection() -> None:
    assert projected(["name"]) == [
        {"id": "a", "name": "n"},
        {"id": "b", "name": "n2"},
        {"id": "c", "name": "n3"},
    ]
    # Dataset.get asks for runtime.version: an empty runtime must come back as {}, a missing one not at all
    assert projected(["runtime.version"]) == [
        {"id": "a", "runtime": {}},
        {"id": "b", "runtime": {"version": "1.2"}},
        {"id": "c"},
    ]
    assert projected(["execution.*"])[0] == {"id": "a", "execution": {"queue": "q", "parameters": {}}}
    assert projected(["models.output.model"])[0] == {
        "id": "a",
        "models": {"output": [{"model": "M1"}, {"model": "M2"}]},
    }
    assert projected(["execution.queue", "execution"])[0]["execution"] == {"queue": "q", "parameters": {}}
    assert projected(["name"], key="projection")[1] == {"id": "b", "name": "n2"}


def test_exclusion_projection() -> None:
    first = projected(["-script", "-models"])[0]
    assert first == {"id": "a", "name": "n", "runtime": {}, "execution": {"queue": "q", "parameters": {}}}
    assert PROJECTED[0]["script"] == {"diff": "x"}, "the stored document is untouched"
    assert projected(["name", "-name"]) == [{"id": "a"}, {"id": "b"}, {"id": "c"}]


def test_filters_ordering_paging_and_projection_together() -> None:
    docs: list[Doc] = [
        {
            "id": f"d{i}",
            "name": f"sensors-{i}",
            "system_tags": ["dataset"],
            "status": "completed",
            "created": i,
        }
        for i in range(5)
    ] + [{"id": "x", "name": "sensors-x", "system_tags": [], "status": "completed", "created": 9}]
    request = {
        "name": "^sensors",
        "system_tags": ["dataset"],
        "status": ["completed"],
        "order_by": ["-created"],
        "page": 0,
        "page_size": 2,
        "only_fields": ["id", "created"],
    }
    assert run_query(docs, request, TASK_OPTIONS).items == [
        {"id": "d4", "created": 4},
        {"id": "d3", "created": 3},
    ]
    assert query.MAX_PAGE_SIZE == 500
