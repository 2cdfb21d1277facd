"""API errors in the real ClearML server's envelope (HTTP status == result_code)."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answered as ``{"meta": {"result_code", "result_subcode", "result_msg"}}``."""

    def __init__(self, code: int, subcode: int, msg: str, **details: Any) -> None:
        if details:
            msg = f"{msg}: " + ", ".join(f"{k}={v}" for k, v in details.items())
        super().__init__(msg)
        self.code = code
        self.subcode = subcode
        self.msg = msg


def not_supported(endpoint: str) -> ApiError:
    return ApiError(400, 1, "endpoint is not supported", endpoint=endpoint)


def invalid_id(msg: str = "invalid object id", **details: Any) -> ApiError:
    return ApiError(400, 10, msg, **details)


def missing_field(*names: str) -> ApiError:
    return ApiError(400, 11, "missing required fields", fields=",".join(names))


def validation(msg: str, **details: Any) -> ApiError:
    return ApiError(400, 12, f"validation error: {msg}", **details)


def fields_value(msg: str, **details: Any) -> ApiError:
    return ApiError(400, 16, f"invalid value for fields: {msg}", **details)


def invalid_regex(pattern: str, error: str) -> ApiError:
    return ApiError(400, 21, "malformed regular expression", pattern=pattern, error=error)


def invalid_task_id(task_id: object) -> ApiError:
    return ApiError(400, 101, "invalid task id", id=task_id)


def invalid_task_status(msg: str, **details: Any) -> ApiError:
    return ApiError(400, 110, f"invalid task status: {msg}", **details)


def task_published(task_id: str) -> ApiError:
    return ApiError(400, 113, "task published (invalid task status)", id=task_id)


def invalid_model_id(model_id: object) -> ApiError:
    return ApiError(400, 201, "invalid model id", id=model_id)


def invalid_project_id(project_id: object) -> ApiError:
    return ApiError(400, 401, "invalid project id", id=project_id)


def project_has_tasks(project_id: str, count: int) -> ApiError:
    return ApiError(400, 402, "project has associated tasks", id=project_id, tasks=count)


def invalid_queue_id(queue_id: object) -> ApiError:
    return ApiError(400, 701, "invalid queue id", id=queue_id)


def task_not_queued(queue_id: str, task_id: str) -> ApiError:
    return ApiError(400, 703, "invalid queue id or task not in queue", queue=queue_id, task=task_id)


def task_already_queued(task_id: str) -> ApiError:
    return ApiError(400, 706, "failed adding task to queue since task is already queued", task=task_id)


def no_default_queue() -> ApiError:
    return ApiError(400, 707, "no queue is tagged as the default queue for this company")


def unique_violation(msg: str, **details: Any) -> ApiError:
    return ApiError(400, 801, f"value combination already exists: {msg}", **details)


def invalid_worker(worker: object) -> ApiError:
    return ApiError(400, 1001, "invalid worker id", worker=worker)


def unauthorized(subcode: int, msg: str) -> ApiError:
    return ApiError(401, subcode, msg)


def internal(msg: str) -> ApiError:
    return ApiError(500, 1, f"internal server error: {msg}")
