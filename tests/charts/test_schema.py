"""values.schema.json covers every value, refuses unknown keys everywhere, and bad values are refused
with a message naming the value: generated from values.yaml and the schema, one helm call per batch
(helm reports every schema error of a values file at once)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.charts import chart

SCHEMA = json.loads((chart.CHART / "values.schema.json").read_text())
VALUES = chart.load_yaml(chart.CHART / "values.yaml")
# objects whose keys are the user's own (labels, annotations, selectors, Kubernetes passthroughs)
FREE_FORM = {
    "commonLabels",
    "labels",
    "annotations",
    "podAnnotations",
    "nodeSelector",
    "parameters",
    "affinity",
}


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = SCHEMA["definitions"][node["$ref"].removeprefix("#/definitions/")]
    return node


def child(node: dict[str, Any], key: str) -> dict[str, Any] | None:
    node = resolve(node)
    if key in node.get("properties", {}):
        return resolve(node["properties"][key])
    for pattern, sub in node.get("patternProperties", {}).items():
        import re

        if re.search(pattern, key):
            return resolve(sub)
    extra = node.get("additionalProperties")
    return resolve(extra) if isinstance(extra, dict) else None


def leaves(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every value of values.yaml by its path; free-form maps and lists count as one value."""
    if isinstance(value, dict) and value and (not path or path[-1] not in FREE_FORM):
        for key, sub in value.items():
            yield from leaves(sub, (*path, key))
    else:
        yield path, value


def at(path: tuple[str, ...]) -> str:
    return "at '/" + "/".join(path) + "'"


def set_path(values: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        values = values.setdefault(key, {})
    values[path[-1]] = value


def test_every_value_has_a_schema_and_every_schema_property_a_value() -> None:
    missing = []
    for path, _ in leaves(VALUES):
        node: dict[str, Any] | None = SCHEMA
        for key in path:
            node = child(node, key) if node is not None else None
        if node is None:
            missing.append("/".join(path))
    assert not missing, f"values without a schema: {missing}"

    def properties(node: dict[str, Any], values: Any, path: tuple[str, ...]) -> Iterator[str]:
        node = resolve(node)
        for key, sub in node.get("properties", {}).items():
            if not isinstance(values, dict) or key not in values:
                yield "/".join((*path, key))
            elif (
                key not in FREE_FORM and key != "resources"
            ):  # requests/limits: optional keys (ephemeral-storage)
                yield from properties(sub, values[key], (*path, key))

    # every pool under agents.pools has the full shape
    extra = [p for p in properties(SCHEMA, VALUES, ()) if p != "extraObjects"]
    assert not extra, f"schema properties that values.yaml does not document: {extra}"


def test_every_object_refuses_unknown_keys() -> None:
    def walk(node: dict[str, Any], where: str) -> Iterator[str]:
        shaped = "properties" in node or "patternProperties" in node
        if node.get("type") == "object" and shaped and node.get("additionalProperties") is not False:
            yield where
        for key, sub in node.get("properties", {}).items():
            yield from walk(sub, f"{where}/{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                yield from walk(node[key], f"{where}/{key}")
        for sub in node.get("patternProperties", {}).values():
            yield from walk(sub, f"{where}/*")

    open_objects = list(walk(SCHEMA, "")) + [
        w for name, d in SCHEMA["definitions"].items() for w in walk(d, f"#{name}")
    ]
    assert not open_objects, open_objects


def refused(values: dict[str, Any], tmp_path: Path) -> str:
    result = chart.try_render(values, tmp_path)
    assert result.returncode != 0, "helm accepted values the schema should refuse"
    return result.stderr


def test_wrong_types_are_refused_naming_each_value(tmp_path: Path) -> None:
    bad: dict[str, Any] = {}
    expected = []
    for path, value in leaves(VALUES):
        if path[0] == "extraObjects" or isinstance(value, dict):
            continue  # helm itself keeps a map that a value file replaces by a scalar (with a warning)
        node: dict[str, Any] | None = SCHEMA
        for key in path:
            node = child(node, key) if node is not None else None
        if node is not None and "oneOf" in node:  # a quantity: "500m" or 0.5
            wrong: Any = "lots"
        else:
            wrong = {bool: "yes", int: "many", float: "much", str: 12345, list: "one"}[type(value)]
        set_path(bad, path, wrong)
        expected.append(path)
    message = refused(bad, tmp_path)
    unnamed = [p for p in expected if at(p) not in message]
    assert not unnamed, f"not named in helm's message: {unnamed}\n{message[:2000]}"
    assert len(expected) > 120


def test_unknown_keys_are_refused_at_every_level(tmp_path: Path) -> None:
    bad: dict[str, Any] = {"colour": "blue"}
    expected = [()]
    for path, _ in leaves(VALUES):
        for depth in range(1, len(path)):
            parent = path[:depth]
            if parent[-1] in FREE_FORM or parent in expected:
                continue
            set_path(bad, (*parent, "colour"), "blue")
            expected.append(parent)
    message = refused(bad, tmp_path)
    for parent in expected:
        name = "at '/" + "/".join(parent) + "'" if parent else "at ''"
        assert name in message and "additional properties 'colour' not allowed" in message, (
            parent,
            message[:1500],
        )
    assert len(expected) > 25


def out_of_range() -> Iterator[tuple[tuple[str, ...], Any]]:
    """For each value with a bound, an enum or a pattern in the schema, a value just outside it."""
    for path, value in leaves(VALUES):
        node: dict[str, Any] | None = SCHEMA
        for key in path:
            node = child(node, key) if node is not None else None
        if node is None:
            continue
        if "minimum" in node:
            yield path, node["minimum"] - 1
        elif "exclusiveMinimum" in node:
            yield path, node["exclusiveMinimum"]
        elif "maximum" in node:
            yield path, node["maximum"] + 1
        elif "enum" in node:
            yield path, "not-one-of-them"
        elif "pattern" in node and isinstance(value, str):
            yield path, "bad value\twith a tab/"


def test_values_out_of_range_are_refused_naming_each_value(tmp_path: Path) -> None:
    bad: dict[str, Any] = {}
    cases = list(out_of_range())
    for path, value in cases:
        set_path(bad, path, value)
    message = refused(bad, tmp_path)
    unnamed = [(p, v) for p, v in cases if at(p) not in message]
    assert not unnamed, f"accepted or not named: {unnamed}\n{message[:2000]}"
    assert len(cases) > 60


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"images": {"tag": "latest"}}, "at '/images/tag'"),
        ({"images": {"serving": {"tag": "latest"}}}, "at '/images/serving/tag'"),
        ({"scheduler": {"config": {"tags": ["-Production"]}}}, "at '/scheduler/config/tags/0'"),
        ({"scheduler": {"config": {"template_id": "not-an-id"}}}, "at '/scheduler/config/template_id'"),
        ({"canary": {"config": {"steps": [0.1, 1.5]}}}, "at '/canary/config/steps/1'"),
        (
            {"serving": {"extraEnv": [{"name": "CLEARML_API_SECRET_KEY", "value": "x"}]}},
            "at '/serving/extraEnv/0/name'",
        ),
        ({"agents": {"extraEnv": [{"name": "S3_SECRET", "value": "x"}]}}, "at '/agents/extraEnv/0/name'"),
        (
            {
                "serving": {
                    "extraEnv": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
                }
            },
            "at '/serving/extraEnv/0'",
        ),
        (
            {"agents": {"pools": {"GPU_pool": copy.deepcopy(VALUES["agents"]["pools"]["training"])}}},
            "at '/agents/pools'",
        ),
        ({"clearml": {"accessKey": "AKIA0123456789ABCDEF"}}, "at '/clearml'"),
    ],
)
def test_named_refusals(values: dict[str, Any], named: str, tmp_path: Path) -> None:
    assert named in refused(values, tmp_path)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"clearml": {"existingSecret": ""}}, "clearml.existingSecret: name an existing Secret"),
        (
            {"agents": {"pools": {"training": {"minReplicas": 5}}}},
            "agents.pools.training: minReplicas 5 is above maxReplicas 4",
        ),
        (
            {"canary": {"config": {"steps": [0.5, 0.25]}}},
            "canary.config.steps[1]: 0.25 is not above the step before it",
        ),
        (
            {"serving": {"autoscaling": {"minReplicas": 7}}},
            "serving.autoscaling: minReplicas 7 is above maxReplicas 6",
        ),
        (
            {"serving": {"pdb": {"minAvailable": 2}}},
            "serving.pdb.minAvailable: 2 would block every voluntary disruption",
        ),
        (
            {"scheduler": {"config": {"parameters": {"Args/dataset_id": "x"}}}},
            'scheduler.config.parameters: "Args/dataset_id" is the dataset_parameter',
        ),
        ({"agents": {"scaling": "keda"}, "autoscaler": {"enabled": False}}, "agents.scaling=keda"),
        (
            {"agents": {"pools": {"services": {"enabled": False}, "training": {"enabled": False}}}},
            "agents.pools: no pool is enabled",
        ),
    ],
)
def test_cross_value_checks_name_the_value(values: dict[str, Any], message: str, tmp_path: Path) -> None:
    assert message in refused(values, tmp_path)
