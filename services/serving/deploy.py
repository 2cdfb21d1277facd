"""The serving configuration in ClearML: the clearml-serving control-plane task and our arms.

- :func:`ensure_service`: find the service task by project and name, or create it (as
  ``clearml-serving create`` does), and upload the preprocess shim as artifact ``py_code_occupancy``
  (again only when its content changed).
- :func:`apply_arms`: write the endpoints ``occupancy/champion`` (and ``occupancy/canary``) with
  engine ``custom`` and ``auxiliary_cfg = {"arm", "model_version"}``, and the canary route
  ``occupancy`` over them with weights ``[1 - w, w]``. Level-triggered: it reads what is stored and
  writes only when that differs, so calling it every poll costs two reads.

Both use clearml-serving's own ``ModelRequestProcessor`` in this process, so the configuration
objects are exactly what its CLI writes and its inference app reads. Endpoints of other names on
the same service are left alone.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("occupancy.serving")

PUBLIC_ENDPOINT = "occupancy"
CHAMPION = "champion"
CANARY = "canary"
ENGINE = "custom"
PREPROCESS_ARTIFACT = "py_code_occupancy"
SHIM = Path(__file__).resolve().with_name("preprocess_shim.py")
SYSTEM_TAG = "serving-control-plane"
WEIGHT_DIGITS = 6


@dataclass(frozen=True)
class Arm:
    model_id: str
    model_version: str


class DeployError(RuntimeError):
    pass


def _processor(service_id: str) -> Any:
    from clearml_serving.serving.model_request_processor import ModelRequestProcessor

    processor = ModelRequestProcessor(task_id=service_id)
    processor.deserialize(skip_sync=True)
    return processor


def find_service(project: str, name: str) -> str | None:
    """The oldest clearml-serving control-plane task named ``name`` in ``project`` (any status)."""
    from clearml import Task

    ids = Task.query_tasks(
        project_name=project,
        task_name=f"^{re.escape(name)}$",
        task_filter={"type": ["service"], "system_tags": [SYSTEM_TAG, "-archived"], "order_by": ["created"]},
    )
    if len(ids) > 1:
        log.warning(
            "%d serving services named %r in %s: using the oldest, %s", len(ids), name, project, ids[0]
        )
    return str(ids[0]) if ids else None


def ensure_service(project: str, name: str) -> str:
    """The id of the serving service ``project``/``name``, created if missing; idempotent."""
    from clearml import Task
    from clearml.storage.util import sha256sum
    from clearml_serving.serving.model_request_processor import ModelRequestProcessor

    service_id = find_service(project, name)
    if service_id is None:
        processor = ModelRequestProcessor(force_create=True, name=name, project=project)
        processor.serialize()  # the empty configuration objects, as `clearml-serving create` writes
        service_id = str(processor.get_id())
        log.info("created serving service %s (%s/%s)", service_id, project, name)
    task: Any = Task.get_task(task_id=service_id)
    local_hash, _ = sha256sum(str(SHIM), block_size=1024 * 1024)
    stored = task.artifacts.get(PREPROCESS_ARTIFACT)
    if stored is None or stored.hash != local_hash:
        task.upload_artifact(name=PREPROCESS_ARTIFACT, artifact_object=SHIM, wait_on_upload=True)
        log.info("uploaded %s to serving service %s", PREPROCESS_ARTIFACT, service_id)
    return service_id


def _endpoint_dict(arm_name: str, arm: Arm) -> dict[str, Any]:
    return {
        "engine_type": ENGINE,
        "serving_url": PUBLIC_ENDPOINT,
        "version": arm_name,
        "model_id": arm.model_id,
        "preprocess_artifact": PREPROCESS_ARTIFACT,
        "auxiliary_cfg": {"arm": arm_name, "model_version": str(arm.model_version)},
    }


def desired_configuration(
    champion: Arm | None, canary: Arm | None, canary_weight: float
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """(endpoints by url, canary route or None) that :func:`apply_arms` stores."""
    if champion is None and canary is not None:
        raise ValueError("a canary needs a champion beside it")
    if not 0.0 <= canary_weight <= 1.0:
        raise ValueError(f"canary_weight must be within 0..1, got {canary_weight}")
    endpoints: dict[str, dict[str, Any]] = {}
    if champion is None:
        return endpoints, None
    endpoints[f"{PUBLIC_ENDPOINT}/{CHAMPION}"] = _endpoint_dict(CHAMPION, champion)
    if canary is None:
        route = {
            "endpoint": PUBLIC_ENDPOINT,
            "weights": [1.0],
            "load_endpoints": [f"{PUBLIC_ENDPOINT}/{CHAMPION}"],
        }
        return endpoints, route
    endpoints[f"{PUBLIC_ENDPOINT}/{CANARY}"] = _endpoint_dict(CANARY, canary)
    w = round(float(canary_weight), WEIGHT_DIGITS)
    route = {
        "endpoint": PUBLIC_ENDPOINT,
        "weights": [round(1.0 - w, WEIGHT_DIGITS), w],
        "load_endpoints": [f"{PUBLIC_ENDPOINT}/{CHAMPION}", f"{PUBLIC_ENDPOINT}/{CANARY}"],
    }
    return endpoints, route


def _canonical(value: Any) -> str:
    """Stored values come back through HOCON (numbers as strings or ints): compare as text."""

    def norm(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): norm(x) for k, x in v.items() if x is not None}
        if isinstance(v, list | tuple):
            return [norm(x) for x in v]
        if isinstance(v, float):
            return repr(round(v, WEIGHT_DIGITS))
        return str(v)

    return json.dumps(norm(value), sort_keys=True)


def _ours(url: str) -> bool:
    return url == PUBLIC_ENDPOINT or url.startswith(PUBLIC_ENDPOINT + "/")


def apply_arms(service_id: str, champion: Arm | None, canary: Arm | None, canary_weight: float) -> bool:
    """Store exactly this serving configuration if it differs from the stored one; True if it wrote."""
    from clearml_serving.serving.endpoints import CanaryEP, ModelEndpoint

    endpoints, route = desired_configuration(champion, canary, canary_weight)
    processor = _processor(service_id)
    current_eps = {
        k: v.as_dict(remove_null_entries=True) for k, v in processor._endpoints.items() if _ours(k)
    }
    current_route = processor._canary_endpoints.get(PUBLIC_ENDPOINT)
    current_route_dict = (
        current_route.as_dict(remove_null_entries=True) if current_route is not None else None
    )
    if current_route_dict is not None:
        current_route_dict.pop("load_endpoint_prefix", None)
    want_eps = {k: ModelEndpoint(**v).as_dict(remove_null_entries=True) for k, v in endpoints.items()}
    eps_differ = _canonical(current_eps) != _canonical(want_eps)
    route_differs = _canonical(current_route_dict) != _canonical(route)
    if not eps_differ and not route_differs:
        return False
    task = processor._task
    new_eps = {k: v for k, v in processor._endpoints.items() if not _ours(k)}
    new_eps.update({k: ModelEndpoint(**v) for k, v in endpoints.items()})
    new_routes = {k: v for k, v in processor._canary_endpoints.items() if k != PUBLIC_ENDPOINT}
    if route is not None:
        new_routes[PUBLIC_ENDPOINT] = CanaryEP(**route)

    def write_endpoints() -> None:
        task.set_configuration_object(
            name="endpoints", config_dict={k: v.as_dict(remove_null_entries=True) for k, v in new_eps.items()}
        )

    def write_route() -> None:
        task.set_configuration_object(
            name="canary", config_dict={k: v.as_dict(remove_null_entries=True) for k, v in new_routes.items()}
        )

    # Readers (the inference app polls) may see one write without the other: a route naming a missing
    # endpoint is skipped by clearml-serving, so add endpoints before the route that uses them and
    # remove them after the route that stops using them.
    shrinking = len(endpoints) < len(current_eps)
    steps = [(write_endpoints, eps_differ), (write_route, route_differs)]
    for write, needed in reversed(steps) if shrinking else steps:
        if needed:
            write()
    log.info(
        "serving %s: champion=%s canary=%s weight=%.3f",
        service_id,
        champion.model_id if champion else None,
        canary.model_id if canary else None,
        canary_weight if canary else 0.0,
    )
    return True


def read_arms(service_id: str) -> dict[str, Any]:
    """What is stored: our endpoints (model id, version, arm) and the route's weights."""
    processor = _processor(service_id)
    arms = {
        k: {
            "model_id": v.model_id,
            "model_version": str((v.auxiliary_cfg or {}).get("model_version")),
            "arm": (v.auxiliary_cfg or {}).get("arm"),
        }
        for k, v in processor._endpoints.items()
        if _ours(k)
    }
    route = processor._canary_endpoints.get(PUBLIC_ENDPOINT)
    return {
        "service_id": service_id,
        "endpoints": arms,
        "route": route.as_dict(remove_null_entries=True) if route is not None else None,
        "preprocess_artifact": PREPROCESS_ARTIFACT in processor._task.artifacts,
    }
