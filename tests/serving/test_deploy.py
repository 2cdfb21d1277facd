"""The serving configuration apply_arms stores (pure parts; the flow test writes and serves it)."""

from __future__ import annotations

import pytest

from services.serving.deploy import Arm, _canonical, desired_configuration


def test_champion_only_and_with_a_canary() -> None:
    endpoints, route = desired_configuration(Arm("m1", "1"), None, 0.3)
    assert list(endpoints) == ["occupancy/champion"]
    champion = endpoints["occupancy/champion"]
    assert champion["engine_type"] == "custom" and champion["preprocess_artifact"] == "py_code_occupancy"
    assert champion["auxiliary_cfg"] == {"arm": "champion", "model_version": "1"}
    assert route == {"endpoint": "occupancy", "weights": [1.0], "load_endpoints": ["occupancy/champion"]}

    endpoints, route = desired_configuration(Arm("m1", "1"), Arm("m2", "2"), 0.1)
    assert endpoints["occupancy/canary"]["model_id"] == "m2"
    assert endpoints["occupancy/canary"]["auxiliary_cfg"] == {"arm": "canary", "model_version": "2"}
    assert route is not None and route["weights"] == [0.9, 0.1]
    assert route["load_endpoints"] == ["occupancy/champion", "occupancy/canary"]

    assert desired_configuration(None, None, 0.0) == ({}, None)


@pytest.mark.parametrize(
    ("champion", "canary", "weight"), [(None, Arm("m", "1"), 0.5), (Arm("m", "1"), None, 1.5)]
)
def test_refused(champion: Arm | None, canary: Arm | None, weight: float) -> None:
    with pytest.raises(ValueError):
        desired_configuration(champion, canary, weight)


def test_stored_values_compare_as_text() -> None:
    """What comes back through HOCON (ints, strings) equals what was written."""
    assert _canonical({"weights": [0.9, 0.1], "aux": {"model_version": "3"}}) == _canonical(
        {"weights": [0.9000000001, 0.1], "aux": {"model_version": 3}}
    )
    assert _canonical({"weights": [0.9, 0.1]}) != _canonical({"weights": [0.75, 0.25]})
