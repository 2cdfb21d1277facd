"""The occupancy endpoint's code inside clearml-serving's ``custom`` engine.

clearml-serving downloads the preprocess artifact (``preprocess_shim.py``: one import of this
module), instantiates :class:`Preprocess` once per endpoint and process, sets ``model_endpoint``
and calls ``load`` with the model package extracted to a folder. Each request then runs
``preprocess`` → ``process`` → ``postprocess`` synchronously on the event loop, so everything here
is numpy: no pandas, no TensorFlow, no ClearML call.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
from starlette.responses import Response

from services.serving.context import current
from services.serving.drift import DriftSettings, InputWindow
from services.serving.faults import FaultInjector
from services.serving.features import feature_matrix
from services.serving.feedback import Issuer, get_signer
from services.serving.metrics import ENDPOINT, NONE, get_metrics
from services.serving.schema import Readings, RequestError, parse_readings
from training.bundle import METADATA_FILE, ModelBundle

FAULTS = FaultInjector.from_env()
DRIFT = DriftSettings.from_env()


class InjectedFault(RuntimeError):
    """An error the faults file asked for."""


def find_bundle_folder(local_path: str | Path) -> Path:
    """The folder holding ``metadata.json``: the extracted package itself or its only sub-folder."""
    path = Path(local_path)
    if path.is_file():
        path = path.parent
    if (path / METADATA_FILE).is_file():
        return path
    found = sorted(path.rglob(METADATA_FILE))
    if len(found) == 1:
        return found[0].parent
    raise FileNotFoundError(f"{local_path}: no model folder ({METADATA_FILE}) in the model package")


class Preprocess:
    """One endpoint's model and lineage (``occupancy/champion`` or ``occupancy/canary``)."""

    model_endpoint: Any  # set by clearml-serving before ``load``

    def __init__(self) -> None:
        self.bundle: ModelBundle | None = None
        self.arm = NONE
        self.model_version = NONE
        self.lineage: dict[str, Any] = {"id": None, "version": None, "dataset_id": None}
        self.threshold = 0.5
        self.metrics = get_metrics()
        self.issuer: Issuer | None = None
        self.drift: InputWindow | None = None

    def load(self, local_path: str) -> ModelBundle:
        endpoint = getattr(self, "model_endpoint", None)
        aux = dict(getattr(endpoint, "auxiliary_cfg", None) or {})
        self.arm = str(aux.get("arm") or NONE)
        self.model_version = str(aux.get("model_version") or NONE)
        if not local_path:
            raise FileNotFoundError(f"no model for endpoint arm {self.arm}")
        bundle = ModelBundle.load(find_bundle_folder(local_path))
        self.bundle = bundle
        self.threshold = float(bundle.metadata.get("threshold", 0.5))
        self.drift = InputWindow.for_model(bundle.metadata, DRIFT)
        self.metrics.model_loaded(self.arm, self.model_version)
        self.lineage = {
            "id": getattr(endpoint, "model_id", None),
            "version": self.model_version,
            "dataset_id": bundle.metadata.get("dataset_id"),
        }
        model_id = self.lineage["id"]
        self.issuer = get_signer().issuer(
            ENDPOINT, self.arm, self.model_version, None if model_id is None else str(model_id)
        )
        return bundle

    def preprocess(
        self, body: Any, state: dict[str, Any], collect_custom_statistics_fn: Any = None
    ) -> Readings:
        info = current()
        if info is not None:
            info.arm, info.model_version = self.arm, self.model_version
        fault = FAULTS.get(self.arm)
        if fault is not None:
            if fault.delay_ms and info is not None:
                info.delay_seconds = fault.delay_ms / 1000.0
            if fault.error_ratio and random.random() < fault.error_ratio:
                message = f"injected fault in arm {self.arm} (error_ratio {fault.error_ratio:g})"
                if info is not None:
                    info.fail("injected_fault", 500, message)
                raise InjectedFault(message)
        try:
            return parse_readings(body)
        except RequestError as exc:
            if info is not None:
                info.fail("validation", 422, str(exc))
            raise

    def process(self, data: Readings, state: dict[str, Any], collect_custom_statistics_fn: Any = None) -> Any:
        try:
            if self.bundle is None:
                raise RuntimeError("no model loaded")
            proba = self.bundle.portable.predict_proba(feature_matrix(data, self.bundle.schema))
            if not (math.isfinite(proba[0]) if len(proba) == 1 else np.all(np.isfinite(proba))):
                raise FloatingPointError("the model returned a non-finite probability")
        except Exception as exc:
            info = current()
            if info is not None:
                info.fail("model_error", 500, f"model error: {type(exc).__name__}: {exc}")
            raise
        return data, proba

    def answer(self, readings: Readings, proba: np.ndarray) -> dict[str, Any]:
        """The response body: a prediction per reading, the model's lineage, the arm, and the
        prediction id to post the readings' true labels with (``POST /feedback/occupancy``)."""
        threshold = self.threshold
        predictions = [
            {"date": date, "occupied": p >= threshold, "probability": round(p, 6)}
            for date, p in zip(readings.dates, proba.tolist(), strict=True)
        ]
        answer: dict[str, Any] = {"predictions": predictions, "model": self.lineage, "arm": self.arm}
        if self.issuer is not None:
            answer["prediction_id"] = self.issuer.issue([p["occupied"] for p in predictions])
        return answer

    def postprocess(
        self, data: Any, state: dict[str, Any], collect_custom_statistics_fn: Any = None
    ) -> Response:
        readings, proba = data
        self.metrics.predicted(self.arm, self.model_version, proba, self.threshold)
        drift = self.drift
        if drift is not None and len(readings) and drift.add(readings.values[-1]):
            self.metrics.input_drift(self.arm, self.model_version, drift.filled, drift.drift())
        # a ready Response: FastAPI sends it as it is instead of walking the dict with jsonable_encoder
        # (~70 µs a request); the body is the same JSON
        body = json.dumps(self.answer(readings, proba), separators=(",", ":"), allow_nan=False)
        return Response(body.encode(), media_type="application/json")
