"""``python -m services.autoscaler run --config FILE``: the process of the chart's autoscaler pod."""

from services.autoscaler.cli import autoscaler_app

autoscaler_app(prog_name="python -m services.autoscaler")
