"""``python -m services.serving run``: the process of the inference server."""

from services.serving.cli import serving_app

serving_app(prog_name="python -m services.serving")
