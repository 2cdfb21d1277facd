"""``app``: the upstream clearml-serving inference app (``clearml_serving.serving.main:app``) behind
:class:`services.serving.middleware.OccupancyMiddleware`. Importing this module connects to ClearML
(``CLEARML_SERVING_TASK_ID`` must name the serving service): uvicorn imports it in each worker."""

from services.serving.middleware import build_app

app = build_app()
