"""Two adaptations of the upstream ``ModelRequestProcessor`` in the inference process, installed
once after start-up; the routing, canary draw and engines stay upstream's.

1. **Unchanged polls cost no parse.** Every poll (3 s) upstream re-reads the serving task and
   re-parses its configuration objects with pyhocon (~30 ms of CPU holding the GIL, 100-200 ms
   latency spikes under load) only to hash them and find nothing changed. The raw text is compared
   first; upstream parses only when it changed.
2. **Endpoints are loaded by the configuration thread, before they are routed to.** Upstream drops
   every loaded endpoint after any change (each canary weight step too) and loads each again in the
   next request that needs it, on the event loop: a ClearML call and a model download that held up
   every request for ~100-240 ms. Here, when the configuration changed, the new endpoints' engines
   (our Preprocess with its model) are loaded in the sync thread and put in the live table *before*
   upstream swaps the configuration in, and reused (not reloaded) when upstream then resets the
   table: an engine is keyed by its endpoint's whole configuration and its preprocess code's hash,
   so a changed endpoint gets a new one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from services.serving.context import current
from services.serving.metrics import NONE

log = logging.getLogger("occupancy.serving")


def arm_of(processor: Any, url: str | None) -> tuple[str, str] | None:
    """(arm, model version) of a configured endpoint, from its ``auxiliary_cfg``."""
    endpoint = processor._endpoints.get(url) if processor is not None and url else None
    aux = getattr(endpoint, "auxiliary_cfg", None) or {}
    if not aux.get("arm"):
        return None
    return str(aux["arm"]), str(aux.get("model_version") or NONE)


def configuration_fingerprint(task: Any) -> str | None:
    """The raw text of what ``ModelRequestProcessor.deserialize`` reads from the service task
    (configuration objects, hyperparameters, artifact hashes); None when it cannot be read."""
    try:
        data = task.data
        config = sorted((name, item.value) for name, item in (data.configuration or {}).items())
        params = sorted(
            (section, name, item.value)
            for section, items in (data.hyperparams or {}).items()
            for name, item in (items or {}).items()
        )
        artifacts = sorted((a.key, a.hash) for a in (data.execution.artifacts or []))
    except Exception:  # an SDK shape we do not know: let upstream decide every time
        return None
    return json.dumps([config, params, artifacts], default=str)


class EngineCache:
    """Loaded engines keyed by endpoint configuration + preprocess code hash (sync thread)."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.engines: dict[str, Any] = {}
        self.lock = threading.Lock()

    def key(self, endpoint: Any) -> str:
        artifact = endpoint.preprocess_artifact
        code_hash = None
        if artifact:
            try:
                code_hash = self.processor._task.artifacts[artifact].hash
            except Exception:
                code_hash = None
        return json.dumps(
            [endpoint.as_dict(remove_null_entries=True), code_hash], sort_keys=True, default=str
        )

    def engine(self, endpoint: Any) -> Any:
        from clearml_serving.serving.preprocess_service import BasePreprocessRequest

        key = self.key(endpoint)
        with self.lock:
            engine = self.engines.get(key)
            if engine is None:
                engine_cls = BasePreprocessRequest.get_engine_cls(endpoint.engine_type)
                engine = engine_cls(model_endpoint=endpoint, task=self.processor._task)
                self.engines[key] = engine
            return engine

    def table(self, endpoints: dict[str, Any]) -> dict[str, Any]:
        """An engine for every endpoint that loads (the others: the request path tries and answers
        the error); engines of endpoints no longer configured are forgotten."""
        table: dict[str, Any] = {}
        for url, endpoint in endpoints.items():
            try:
                table[url] = self.engine(endpoint)
            except Exception as exc:
                log.warning("could not load endpoint %s ahead of requests: %s", url, exc)
        with self.lock:
            used = {id(engine) for engine in table.values()}
            self.engines = {k: e for k, e in self.engines.items() if id(e) in used}
        return table

    def stage(self, task: Any) -> dict[str, Any]:
        """Load the engines of the endpoints stored in ``task`` (before upstream swaps them in)."""
        from clearml_serving.serving.endpoints import ModelEndpoint

        staged: dict[str, Any] = {}
        stored = task.get_configuration_object_as_dict(name="endpoints") or {}
        for url, values in stored.items():
            try:
                endpoint = ModelEndpoint(
                    **{k: v for k, v in values.items() if hasattr(ModelEndpoint.__attrs_attrs__, k)}
                )
                staged[url] = self.engine(endpoint)
            except Exception as exc:
                log.warning("could not load endpoint %s ahead of requests: %s", url, exc)
        return staged


def adapt_processor(processor: Any) -> None:
    """Install both adaptations on the running processor (idempotent)."""
    if getattr(processor, "_occupancy_adapted", False):
        return
    cache = EngineCache(processor)
    original = processor.deserialize
    last: dict[str, str | None] = {"fingerprint": None}

    def deserialize(task: Any = None, *args: Any, **kwargs: Any) -> bool:
        task = task or processor._task
        fingerprint = configuration_fingerprint(task)
        if (
            fingerprint is not None
            and fingerprint == last["fingerprint"]
            and not processor._model_monitoring_update_request
        ):
            return False
        if last["fingerprint"] is not None:  # a change while serving: load the new endpoints first
            started = time.perf_counter()
            # into the live table before upstream routes to them: a new endpoint is not routed to
            # yet; a changed one (a promotion) answers with its new model a moment early
            processor._engine_processor_lookup.update(cache.stage(task))
            log.warning(
                "configuration changed: endpoints loaded in %.0f ms", 1000 * (time.perf_counter() - started)
            )
        changed = bool(original(task, *args, **kwargs))
        last["fingerprint"] = fingerprint
        return changed

    base = type(processor)

    class AdaptedProcessor(base):  # type: ignore[misc, valid-type]
        def _process_canary(self, base_url: str) -> Any:
            # remember the drawn endpoint: a request failing before our Preprocess runs (its model
            # does not load) is still counted against the arm it was routed to
            url = base._process_canary(self, base_url=base_url)
            info = current()
            if info is not None:
                info.endpoint_url = url or base_url
            return url

        @property
        def _engine_processor_lookup(self) -> dict[str, Any]:
            return self.__dict__["_occupancy_engines"]

        @_engine_processor_lookup.setter
        def _engine_processor_lookup(self, value: dict[str, Any]) -> None:
            if not value and self.__dict__.get("_endpoints"):
                # upstream dropping every engine after a change: the new table, from the cache
                value = cache.table({**self._endpoints, **self._model_monitoring_endpoints})
                log.warning("endpoints loaded: %s", ", ".join(sorted(value)))
            self.__dict__["_occupancy_engines"] = value

    existing = processor.__dict__.pop("_engine_processor_lookup", None) or {}
    processor.__dict__["_occupancy_engines"] = existing
    processor.__class__ = AdaptedProcessor
    processor.deserialize = deserialize
    processor._occupancy_adapted = True
    if not existing:
        processor._engine_processor_lookup = {}
