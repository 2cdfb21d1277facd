"""``python -m services.scheduler run --config FILE``: the process of the chart's trigger-scheduler pod."""

from services.scheduler.cli import scheduler_app

scheduler_app(prog_name="python -m services.scheduler")
