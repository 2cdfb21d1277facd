"""The trigger-scheduler service: every Production dataset version launches exactly one retraining
pipeline, whatever happens to the scheduler (restarts, SIGKILL, a second replica by mistake).

``settings.py`` (configuration from YAML and environment), ``reconcile.py`` (one level-triggered poll),
``template.py`` (the pipeline template it clones), ``metrics.py`` (Prometheus), ``app.py`` (the HTTP
endpoints and the poll loop), ``cli.py`` (``occupancy-mlops scheduler ...``).
"""
