"""The canary controller: deploys the gate's newest candidate beside the serving champion, moves
traffic to it in steps, judges every step on live metrics from Prometheus, and promotes or rolls back
through the model registry (``training/registry.py``), the one owner of the models' states.

``settings.py`` (configuration from YAML and environment), ``analysis.py`` (PromQL, shift, verdict),
``reconcile.py`` (one level-triggered pass), ``metrics.py`` (Prometheus), ``app.py`` (the HTTP
endpoints and the poll loop), ``cli.py`` (``occupancy-mlops canary ...``).
"""
