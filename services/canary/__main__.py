"""``python -m services.canary run --config FILE``: the process of the chart's canary-controller pod."""

from services.canary.cli import canary_app

canary_app(prog_name="python -m services.canary")
