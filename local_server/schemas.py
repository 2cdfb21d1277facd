"""The request schema of every endpoint this server answers, with the field types of the real
server's ``apiserver/schema/services/*.conf`` (clearml-server) for API version 2.31.

Where the real server is known to accept more than its schema says, so do we: ``get_all`` filters take
a single value or a list (the real ``get_all`` endpoints have no request model and hand the values to
the query engine), ``_or_.datetime`` takes a list (the SDK's trigger scheduler sends one), tags take a
single string, hyperparameters and configuration take both the list and the nested-object form.
Required fields are those the handlers cannot do without; a few the real schema also requires are
not (``models.create``'s ``uri``, ``workers.status_report``'s ``timestamp``, the date ranges of the
statistics endpoints, which answer empty here).
"""

from __future__ import annotations

from .validation import (
    ANY,
    BOOL,
    INT,
    NUM,
    OBJ,
    STR,
    Enum,
    Int,
    ListOf,
    MapOf,
    OneOf,
    Request,
    Shape,
    Spec,
)

TASK_TYPES = (
    "training",
    "testing",
    "inference",
    "data_processing",
    "application",
    "monitor",
    "controller",
    "optimizer",
    "service",
    "qc",
    "custom",
)
MAX_TOKEN_LIFETIME_S = 365 * 24 * 3600  # the real server's apiserver.auth.max_expiration_sec

STRS = ListOf(STR)
TAGS = ListOf(STR, lone=True)
FILTER = ListOf(STR, lone=True)  # a value or a list of values; None inside means "empty"
RANGE = ListOf(ANY)  # [min, max]
MODE = Enum("input", "output")

PARAM = Shape({"section": STR, "name": STR, "value": STR, "type": STR, "description": STR})
HYPERPARAMS = OneOf(MapOf(MapOf(OneOf(PARAM, STR))), ListOf(PARAM))
CONFIG_ITEM = Shape({"name": STR, "value": STR, "type": STR, "description": STR})
CONFIGURATION = OneOf(MapOf(OneOf(CONFIG_ITEM, STR)), ListOf(CONFIG_ITEM))
ARTIFACT = Shape(
    {
        "key": STR,
        "type": STR,
        "mode": MODE,
        "uri": STR,
        "content_size": INT,
        "hash": STR,
        "timestamp": INT,
        "type_data": Shape({"preview": STR, "content_type": STR, "data_hash": STR}),
        "display_data": ListOf(ListOf(OneOf(STR, NUM, BOOL))),
    },
    required=("key", "type"),
)
EXECUTION = Shape(
    {
        "queue": STR,
        "parameters": OBJ,
        "model": STR,
        "model_desc": OBJ,
        "model_labels": MapOf(NUM),  # the real server turns 1.0 into 1
        "framework": STR,
        "docker_cmd": STR,
        "artifacts": ListOf(ARTIFACT),
    }
)
SCRIPT = Shape(
    {
        "binary": STR,
        "repository": STR,
        "tag": STR,
        "branch": STR,
        "version_num": STR,
        "entry_point": STR,
        "working_dir": STR,
        "requirements": OBJ,
        "diff": STR,
    }
)
MODEL_REF = Shape({"name": STR, "model": STR}, required=("name", "model"))
TASK_MODELS = Shape({"input": ListOf(MODEL_REF), "output": ListOf(MODEL_REF)})
OUTPUT = Shape({"destination": STR, "model": STR, "result": STR, "error": STR})
METADATA_ITEM = Shape({"key": STR, "type": STR, "value": STR}, required=("key",))
METADATA = OneOf(ListOf(METADATA_ITEM), MapOf(OneOf(METADATA_ITEM, STR, NUM, BOOL)))
MULTI_FIELD = Shape({"fields": STRS, "pattern": STR, "datetime": ListOf(STR, lone=True)})
EVENT_METRICS = ListOf(Shape({"task": STR, "metric": STR, "variants": STRS}))
TASK_METRIC = Shape({"task": STR, "metric": STR, "variants": STRS}, required=("task",))

STATUS_CHANGE = Request(
    {"task": STR, "force": BOOL, "status_reason": STR, "status_message": STR}, required=("task",)
)
GET_ALL = Request(
    {
        "id": FILTER,
        "name": STR,
        "tags": FILTER,
        "system_tags": FILTER,
        "user": FILTER,
        "order_by": ListOf(STR, lone=True),
        "only_fields": ListOf(STR, lone=True),
        "projection": ListOf(STR, lone=True),
        "page": Int(0, 2**31),
        "page_size": Int(1, 2**31),
        "start": Int(0, 2**31),
        "size": Int(1, 2**31),
        "scroll_id": STR,
        "refresh_scroll": BOOL,
        "search_text": STR,
        "search_hidden": BOOL,
        "include_subprojects": BOOL,
        "allow_public": BOOL,
        "_any_": MULTI_FIELD,
        "_all_": MULTI_FIELD,
        "_or_": MULTI_FIELD,
        "_and_": MULTI_FIELD,
    }
)
TASK_BODY: dict[str, Spec] = {
    "input": OBJ,
    "output": OUTPUT,
    "execution": EXECUTION,
    "script": SCRIPT,
    "hyperparams": HYPERPARAMS,
    "configuration": CONFIGURATION,
    "models": TASK_MODELS,
    "container": MapOf(STR),
    "runtime": OBJ,
}
"""A task's content fields: the same in requests and in stored documents."""
TASK_FIELDS: dict[str, Spec] = {
    "name": STR,
    "tags": TAGS,
    "system_tags": TAGS,
    "type": Enum(*TASK_TYPES),
    "comment": STR,
    "parent": STR,
    "project": STR,
    "output_dest": STR,
    **TASK_BODY,
}
MODEL_FIELDS: dict[str, Spec] = {
    "uri": STR,
    "name": STR,
    "comment": STR,
    "tags": TAGS,
    "system_tags": TAGS,
    "framework": STR,
    "design": OBJ,
    "labels": MapOf(INT),
    "ready": BOOL,
    "public": BOOL,
    "project": STR,
    "parent": STR,
    "task": STR,
    "iteration": INT,
    "ui_cache": OBJ,
    "created": STR,
    "metadata": METADATA,
}
QUEUE_FIELDS: dict[str, Spec] = {
    "name": STR,
    "display_name": STR,
    "tags": TAGS,
    "system_tags": TAGS,
    "metadata": METADATA,
}
PROJECT_FIELDS: dict[str, Spec] = {
    "name": STR,
    "description": STR,
    "tags": TAGS,
    "system_tags": TAGS,
    "default_output_destination": STR,
}
EVENT = Shape(
    {
        "task": STR,
        "type": STR,
        "iter": INT,
        "timestamp": NUM,
        "metric": STR,
        "variant": STR,
        "value": NUM,
        "values": ListOf(NUM),
        "msg": STR,
        "level": STR,
        "worker": STR,
        "plot_str": STR,
        "url": STR,
        "x_axis_label": STR,
        "model_event": BOOL,
        "allow_locked": BOOL,
        "model": STR,
    },
)  # an event without task or type is counted in errors_info, as on the real server


def _req(required: tuple[str, ...] = (), common: dict[str, Spec] | None = None, **fields: Spec) -> Request:
    return Request({**(common or {}), **fields}, required)


def _task(*extra_required: str, common: dict[str, Spec] | None = None, **fields: Spec) -> Request:
    return _req(("task", *extra_required), common, task=STR, **fields)


def _queue(*extra_required: str, common: dict[str, Spec] | None = None, **fields: Spec) -> Request:
    return _req(("queue", *extra_required), common, queue=STR, **fields)


def _model(*extra_required: str, common: dict[str, Spec] | None = None, **fields: Spec) -> Request:
    return _req(("model", *extra_required), common, model=STR, **fields)


_TASK_QUERY = GET_ALL.extend(
    type=FILTER,
    status=FILTER,
    project=FILTER,
    parent=FILTER,
    status_changed=ListOf(STR, lone=True),
    last_update=ListOf(STR, lone=True),
    last_change=ListOf(STR, lone=True),
    created=RANGE,
    started=RANGE,
    last_iteration=RANGE,
    active_duration=RANGE,
    comment=STR,
    report=STR,
)
_MODEL_QUERY = GET_ALL.extend(
    ready=BOOL,
    project=FILTER,
    task=FILTER,
    framework=FILTER,
    uri=FILTER,
    parent=FILTER,
    comment=STR,
    last_update=ListOf(STR, lone=True),
    last_change=ListOf(STR, lone=True),
    created=RANGE,
    last_iteration=RANGE,
)
_PROJECT_QUERY = GET_ALL.extend(
    basename=STR,
    description=STR,
    parent=FILTER,
    path=FILTER,
    shallow_search=BOOL,
    include_stats=BOOL,
    last_update=RANGE,
    include_dataset_stats=BOOL,
    stats_with_children=BOOL,
    stats_for_state=Enum("active", "archived"),
    check_own_contents=BOOL,
    active_users=STRS,
    children_type=Enum("pipeline", "report", "dataset"),
    children_tags=ListOf(STR, lone=True),
)
_QUEUE_QUERY = GET_ALL.extend(max_task_entries=INT)
_STATUS_EXTRA: dict[str, Spec] = {
    "worker": STR,
    "publish": BOOL,
    "publish_model": BOOL,
    "include_pipeline_steps": BOOL,
}

REQUESTS: dict[str, Request] = {
    # auth, users, server
    "auth.login": _req(expiration_sec=Int(1, MAX_TOKEN_LIFETIME_S)),
    "debug.ping": _req(),
    "server.ping": _req(),
    "server.info": _req(),
    "server.get_stats": _req(interval=INT),
    "server.report_stats_option": _req(enabled=BOOL),
    "users.get_current_user": _req(),
    "users.get_all": GET_ALL,
    "users.get_all_ex": GET_ALL.extend(active_in_projects=STRS),
    "users.get_preferences": _req(),
    "users.get_vaults": _req(),
    # projects
    "projects.create": _req(("name",), PROJECT_FIELDS),
    "projects.get_by_id": _req(("project",), project=STR),
    "projects.get_all": _PROJECT_QUERY,
    "projects.get_all_ex": _PROJECT_QUERY,
    "projects.update": _req(("project",), PROJECT_FIELDS, project=STR),
    "projects.delete": _req(
        ("project",), project=STR, force=BOOL, delete_contents=BOOL, delete_external_artifacts=BOOL
    ),
    "projects.get_hyper_parameters": _req(project=STR, page=INT, page_size=INT, include_subprojects=BOOL),
    "projects.get_task_tags": _req(include_system=BOOL, projects=STRS, filter=OBJ),
    "projects.get_model_tags": _req(include_system=BOOL, projects=STRS, filter=OBJ),
    "projects.validate_delete": _req(("project",), project=STR),
    "projects.make_public": _req(("ids",), ids=ListOf(STR, lone=True)),
    "projects.make_private": _req(("ids",), ids=ListOf(STR, lone=True)),
    "projects.get_unique_metric_variants": _req(
        project=STR, include_subprojects=BOOL, ids=STRS, model_metrics=BOOL
    ),
    "projects.get_model_metadata_keys": _req(project=STR, include_subprojects=BOOL, page=INT, page_size=INT),
    "projects.get_model_metadata_values": _req(
        ("key",), key=STR, projects=STRS, include_subprojects=BOOL, allow_public=BOOL, page=INT, page_size=INT
    ),
    "projects.get_hyperparam_values": _req(
        ("section", "name"),
        section=STR,
        name=STR,
        pattern=STR,
        projects=STRS,
        include_subprojects=BOOL,
        allow_public=BOOL,
        page=INT,
        page_size=INT,
    ),
    "projects.get_project_tags": _req(include_system=BOOL, projects=STRS, filter=OBJ),
    "projects.get_user_names": _req(projects=STRS, include_subprojects=BOOL, entity=Enum("task", "model")),
    "projects.move": _req(("project",), project=STR, new_location=STR),
    "projects.merge": _req(("project",), project=STR, destination_project=STR),
    "projects.get_task_parents": _req(
        projects=STRS, include_subprojects=BOOL, tasks_state=Enum("active", "archived"), task_name=STR
    ),
    # tasks
    "tasks.create": _req(("name", "type"), TASK_FIELDS),
    "tasks.edit": _task(common=TASK_FIELDS, force=BOOL, status=STR),
    "tasks.update": _task(
        name=STR,
        tags=TAGS,
        system_tags=TAGS,
        comment=STR,
        project=STR,
        output__error=STR,
        created=STR,
    ),
    "tasks.get_by_id": _task(),
    "tasks.get_by_id_ex": _TASK_QUERY,
    "tasks.get_all": _TASK_QUERY,
    "tasks.get_all_ex": _TASK_QUERY,
    "tasks.get_types": _req(projects=STRS),
    "tasks.set_requirements": _task("requirements", requirements=OBJ),
    "tasks.started": STATUS_CHANGE.extend(_STATUS_EXTRA),
    "tasks.stopped": STATUS_CHANGE.extend(_STATUS_EXTRA),
    "tasks.failed": STATUS_CHANGE.extend(_STATUS_EXTRA),
    "tasks.close": STATUS_CHANGE.extend(_STATUS_EXTRA),
    "tasks.completed": STATUS_CHANGE.extend(_STATUS_EXTRA),
    "tasks.stop": STATUS_CHANGE.extend(_STATUS_EXTRA),
    "tasks.publish": STATUS_CHANGE.extend(_STATUS_EXTRA),
    "tasks.reset": STATUS_CHANGE.extend(
        clear_all=BOOL, return_file_urls=BOOL, delete_output_models=BOOL, delete_external_artifacts=BOOL
    ),
    "tasks.enqueue": STATUS_CHANGE.extend(
        queue=STR, queue_name=STR, verify_watched_queue=BOOL, update_execution_queue=BOOL
    ),
    "tasks.dequeue": STATUS_CHANGE.extend(new_status=STR, remove_from_all_queues=BOOL),
    "tasks.ping": _task(),
    "tasks.edit_runtime": _task(add_or_update=MapOf(STR), remove=STRS, force=BOOL),
    "tasks.clone": _task(
        new_task_name=STR,
        new_task_comment=STR,
        new_task_tags=TAGS,
        new_task_system_tags=TAGS,
        new_task_parent=STR,
        new_task_project=STR,
        new_task_hyperparams=HYPERPARAMS,
        new_task_configuration=CONFIGURATION,
        execution_overrides=EXECUTION,
        validate_references=BOOL,
        new_project_name=STR,
        new_task_input_models=ListOf(MODEL_REF),
        new_task_container=MapOf(STR),
    ),
    "tasks.delete": STATUS_CHANGE.extend(
        move_to_trash=BOOL,
        return_file_urls=BOOL,
        delete_output_models=BOOL,
        delete_external_artifacts=BOOL,
        include_pipeline_steps=BOOL,
    ),
    "tasks.delete_many": _req(
        ("ids",),
        ids=ListOf(STR, lone=True),
        force=BOOL,
        move_to_trash=BOOL,
        return_file_urls=BOOL,
        delete_output_models=BOOL,
        delete_external_artifacts=BOOL,
        include_pipeline_steps=BOOL,
    ),
    "tasks.archive": _req(
        tasks=ListOf(STR, lone=True),
        ids=ListOf(STR, lone=True),
        status_reason=STR,
        status_message=STR,
        include_pipeline_steps=BOOL,
    ),
    "tasks.archive_many": _req(
        ("ids",),
        ids=ListOf(STR, lone=True),
        status_reason=STR,
        status_message=STR,
        include_pipeline_steps=BOOL,
    ),
    "tasks.stop_many": _req(
        ("ids",), ids=ListOf(STR, lone=True), status_reason=STR, status_message=STR, force=BOOL
    ),
    "tasks.publish_many": _req(
        ("ids",),
        ids=ListOf(STR, lone=True),
        status_reason=STR,
        status_message=STR,
        force=BOOL,
        publish_model=BOOL,
    ),
    "tasks.enqueue_many": _req(
        ("ids",),
        ids=ListOf(STR, lone=True),
        status_reason=STR,
        status_message=STR,
        queue=STR,
        queue_name=STR,
        validate_tasks=BOOL,
        verify_watched_queue=BOOL,
    ),
    "tasks.dequeue_many": _req(
        ("ids",),
        ids=ListOf(STR, lone=True),
        status_reason=STR,
        status_message=STR,
        new_status=STR,
        remove_from_all_queues=BOOL,
    ),
    "tasks.reset_many": _req(
        ("ids",),
        ids=ListOf(STR, lone=True),
        status_reason=STR,
        status_message=STR,
        force=BOOL,
        clear_all=BOOL,
        return_file_urls=BOOL,
        delete_output_models=BOOL,
        delete_external_artifacts=BOOL,
    ),
    "tasks.unarchive_many": _req(
        ("ids",),
        ids=ListOf(STR, lone=True),
        status_reason=STR,
        status_message=STR,
        include_pipeline_steps=BOOL,
    ),
    "tasks.move": _req(("ids",), ids=ListOf(STR, lone=True), project=STR, project_name=STR),
    "tasks.validate": _req(("name", "type"), TASK_FIELDS),
    "tasks.update_tags": _req(("ids",), ids=ListOf(STR, lone=True), add_tags=STRS, remove_tags=STRS),
    "tasks.make_public": _req(("ids",), ids=ListOf(STR, lone=True)),
    "tasks.make_private": _req(("ids",), ids=ListOf(STR, lone=True)),
    "tasks.edit_hyper_params": _task(
        hyperparams=HYPERPARAMS, replace_hyperparams=Enum("none", "section", "all"), force=BOOL
    ),
    "tasks.delete_hyper_params": _task(
        "hyperparams", hyperparams=ListOf(Shape({"section": STR, "name": STR})), force=BOOL
    ),
    "tasks.get_hyper_params": _req(("tasks",), tasks=ListOf(STR, lone=True)),
    "tasks.edit_configuration": _task(configuration=CONFIGURATION, replace_configuration=BOOL, force=BOOL),
    "tasks.delete_configuration": _task("configuration", configuration=STRS, force=BOOL),
    "tasks.get_configurations": _req(("tasks",), tasks=ListOf(STR, lone=True), names=STRS),
    "tasks.get_configuration_names": _req(("tasks",), tasks=ListOf(STR, lone=True), skip_empty=BOOL),
    "tasks.add_or_update_artifacts": _task("artifacts", artifacts=ListOf(ARTIFACT), force=BOOL),
    "tasks.delete_artifacts": _task(
        "artifacts",
        artifacts=ListOf(Shape({"key": STR, "mode": MODE}, required=("key",))),
        force=BOOL,
    ),
    "tasks.add_or_update_model": _task(
        "name", "model", "type", name=STR, model=STR, type=MODE, iteration=INT
    ),
    "tasks.delete_models": _task(
        "models", models=ListOf(Shape({"name": STR, "type": MODE}, required=("name",)))
    ),
    # models
    "models.create": _req((), MODEL_FIELDS),
    "models.edit": _model(common=MODEL_FIELDS),
    "models.update": _model(common=MODEL_FIELDS),
    "models.update_for_task": _task(
        uri=STR,
        name=STR,
        comment=STR,
        tags=TAGS,
        system_tags=TAGS,
        override_model_id=STR,
        iteration=INT,
    ),
    "models.get_by_id": _model(),
    "models.get_by_task_id": _task(),
    "models.get_all": _MODEL_QUERY,
    "models.get_all_ex": _MODEL_QUERY.extend(include_stats=BOOL),
    "models.get_by_id_ex": _MODEL_QUERY,
    "models.get_frameworks": _req(projects=STRS),
    "models.move": _req(("ids",), ids=ListOf(STR, lone=True), project=STR, project_name=STR),
    "models.update_tags": _req(("ids",), ids=ListOf(STR, lone=True), add_tags=STRS, remove_tags=STRS),
    "models.make_public": _req(("ids",), ids=ListOf(STR, lone=True)),
    "models.make_private": _req(("ids",), ids=ListOf(STR, lone=True)),
    "models.set_ready": _model(publish_task=BOOL, force_publish_task=BOOL),
    "models.publish_many": _req(
        ("ids",), ids=ListOf(STR, lone=True), publish_task=BOOL, publish_tasks=BOOL, force_publish_task=BOOL
    ),
    "models.delete": _model(force=BOOL),
    "models.delete_many": _req(
        ("ids",), ids=ListOf(STR, lone=True), force=BOOL, delete_external_artifacts=BOOL
    ),
    "models.archive_many": _req(("ids",), ids=ListOf(STR, lone=True)),
    "models.unarchive_many": _req(("ids",), ids=ListOf(STR, lone=True)),
    "models.add_or_update_metadata": _model("metadata", metadata=METADATA, replace_metadata=BOOL),
    "models.delete_metadata": _model("keys", keys=STRS),
    # queues
    "queues.create": _req(("name",), QUEUE_FIELDS),
    "queues.get_by_id": _queue(max_task_entries=INT),
    "queues.get_all": _QUEUE_QUERY,
    "queues.get_all_ex": _QUEUE_QUERY,
    "queues.get_default": _req(),
    "queues.update": _queue(common=QUEUE_FIELDS),
    "queues.delete": _queue(force=BOOL),
    "queues.add_task": _queue("task", task=STR, update_execution_queue=BOOL),
    "queues.remove_task": _queue("task", task=STR, update_task_status=BOOL),
    "queues.get_next_task": _queue(get_task_info=BOOL, task=STR),
    "queues.peek_task": _queue(),
    "queues.get_num_entries": _queue(),
    "queues.clear_queue": _queue(),
    "queues.move_task_to_front": _queue("task", task=STR),
    "queues.move_task_to_back": _queue("task", task=STR),
    "queues.move_task_forward": _queue("task", task=STR, count=Int(1, 2**31)),
    "queues.move_task_backward": _queue("task", task=STR, count=Int(1, 2**31)),
    "queues.add_or_update_metadata": _queue("metadata", metadata=METADATA, replace_metadata=BOOL),
    "queues.delete_metadata": _queue("keys", keys=STRS),
    "queues.get_queue_metrics": _req(from_date=NUM, to_date=NUM, interval=INT, queue_ids=STRS, refresh=BOOL),
    # workers
    "workers.register": _req(
        ("worker",), worker=STR, timeout=Int(0, 2**31), queues=STRS, tags=TAGS, system_tags=TAGS
    ),
    "workers.unregister": _req(("worker",), worker=STR),
    "workers.status_report": _req(
        ("worker",),
        worker=STR,
        task=STR,
        queue=STR,
        queues=STRS,
        timestamp=INT,
        machine_stats=OBJ,
        tags=TAGS,
        system_tags=TAGS,
    ),
    "workers.get_all": _req(last_seen=INT, tags=TAGS, system_tags=TAGS, worker_pattern=STR),
    "workers.get_count": _req(last_seen=INT, tags=TAGS, system_tags=TAGS, worker_pattern=STR),
    "workers.get_runtime_properties": _req(("worker",), worker=STR),
    "workers.set_runtime_properties": _req(
        ("worker",),
        worker=STR,
        runtime_properties=ListOf(Shape({"key": STR, "value": STR, "expiry": INT}, required=("key",))),
    ),
    "workers.get_activity_report": _req(from_date=NUM, to_date=NUM, interval=INT),
    "workers.get_stats": _req(
        worker_ids=STRS,
        from_date=NUM,
        to_date=NUM,
        interval=INT,
        items=ListOf(Shape({"key": STR, "aggregation": Enum("avg", "min", "max")}, required=("key",))),
        split_by_resource=BOOL,
    ),
    "workers.get_metric_keys": _req(worker_ids=STRS),
    # events (events.add_batch: every line is checked with EVENT)
    "events.add_batch": _req(requests=ListOf(EVENT)),
    "events.add": Request(EVENT.fields),
    "events.get_task_log": _task(
        batch_size=Int(1, 10_000),
        navigate_earlier=BOOL,
        from_timestamp=NUM,
        order=Enum("asc", "desc"),
        metrics=EVENT_METRICS,
    ),
    "events.get_task_events": _task(
        order=Enum("asc", "desc"),
        scroll_id=STR,
        batch_size=Int(1, 10_000),
        event_type=STR,
        model_events=BOOL,
        metrics=EVENT_METRICS,
        count_total=BOOL,
    ),
    "events.get_task_plots": _task(
        iters=Int(1, 10_000), scroll_id=STR, metrics=EVENT_METRICS, no_scroll=BOOL, model_events=BOOL
    ),
    "events.get_task_latest_scalar_values": _task(),
    "events.get_multi_task_plots": _req(
        ("tasks",),
        tasks=ListOf(STR, lone=True),
        iters=Int(1, 10_000),
        scroll_id=STR,
        no_scroll=BOOL,
        metrics=EVENT_METRICS,
        last_iters_per_task_metric=BOOL,
        model_events=BOOL,
    ),
    "events.debug_images": _req(
        metrics=ListOf(TASK_METRIC),
        task=STR,
        iters=Int(1, 10_000),
        navigate_earlier=BOOL,
        refresh=BOOL,
        scroll_id=STR,
        model_events=BOOL,
    ),
    "events.plots": _req(
        ("metrics",),
        metrics=ListOf(TASK_METRIC),
        iters=Int(1, 10_000),
        navigate_earlier=BOOL,
        refresh=BOOL,
        scroll_id=STR,
        model_events=BOOL,
    ),
    "events.get_debug_image_sample": _req(
        ("task", "metric", "variant"),
        task=STR,
        metric=STR,
        variant=STR,
        iteration=INT,
        refresh=BOOL,
        scroll_id=STR,
        navigate_current_metric=BOOL,
        model_events=BOOL,
    ),
    "events.next_debug_image_sample": _task(
        "scroll_id", scroll_id=STR, navigate_earlier=BOOL, next_iteration=BOOL, model_events=BOOL
    ),
    "events.get_plot_sample": _task(
        "metric",
        metric=STR,
        iteration=INT,
        refresh=BOOL,
        scroll_id=STR,
        navigate_current_metric=BOOL,
        model_events=BOOL,
    ),
    "events.next_plot_sample": _task(
        "scroll_id", scroll_id=STR, navigate_earlier=BOOL, next_iteration=BOOL, model_events=BOOL
    ),
    "events.scalar_metrics_iter_histogram": _task(
        samples=INT, key=Enum("iter", "timestamp", "iso_time"), metrics=EVENT_METRICS, model_events=BOOL
    ),
    "events.multi_task_scalar_metrics_iter_histogram": _req(
        ("tasks",),
        tasks=ListOf(STR, lone=True),
        samples=INT,
        key=Enum("iter", "timestamp", "iso_time"),
        metrics=EVENT_METRICS,
        model_events=BOOL,
    ),
    "events.scalar_metrics_iter_raw": _req(
        (),  # task and metric are required unless scroll_id is given
        task=STR,
        batch_size=INT,
        key=Enum("iter", "timestamp", "iso_time"),
        metric=Shape({"metric": STR, "variants": STRS}, required=("metric",)),
        count_total=BOOL,
        scroll_id=STR,
        model_events=BOOL,
    ),
    "events.get_task_single_value_metrics": _req(
        ("tasks",), tasks=ListOf(STR, lone=True), metrics=EVENT_METRICS, model_events=BOOL
    ),
    "events.get_task_metrics": _req(
        ("tasks", "event_type"),
        tasks=ListOf(STR, lone=True),
        event_type=Enum(
            "training_stats_scalar", "training_stats_vector", "training_debug_image", "plot", "log", "*"
        ),
        model_events=BOOL,
    ),
    "events.get_multi_task_metrics": _req(
        ("tasks",), tasks=ListOf(STR, lone=True), event_type=STR, model_events=BOOL
    ),
    "events.get_scalar_metrics_and_variants": _task(model_events=BOOL),
    "events.vector_metrics_iter_histogram": _task(
        "metric", "variant", metric=STR, variant=STR, model_events=BOOL
    ),
    "events.get_scalar_metric_data": _task(
        "metric", metric=STR, scroll_id=STR, no_scroll=BOOL, model_events=BOOL
    ),
    "events.clear_scroll": _req(scroll_id=STR),
    "events.get_vector_metrics_and_variants": _task(model_events=BOOL),
    "events.delete_for_task": _task(allow_locked=BOOL),
    "events.delete_for_model": _model(allow_locked=BOOL),
    "events.clear_task_log": _task(
        threshold_sec=INT, allow_locked=BOOL, exclude_metrics=STRS, include_metrics=STRS
    ),
}
