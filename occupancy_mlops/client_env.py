"""The environment of a ClearML client process (SDK, agent, serving) pointed at a server: one place
for the demo, the benchmarks and the tests."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SDK_CONFIG = "sdk { development { report_use_subprocess: false } }\n"
"""Report from a thread, not a forked subprocess: with the forked reporter ``Task.close()`` waits
about 10 s for its liveness check, or hangs (an SDK behaviour, the same against a real server)."""


def client_env(
    server_env: Mapping[str, str],
    home: Path,
    *,
    inherit: Mapping[str, str] | None = None,
    set_home: bool = True,
) -> dict[str, str]:
    """``inherit`` (default: this process's environment) without any CLEARML_/TRAINS_ variable, plus
    ``server_env`` (the server's API host and keys), plus a client state of its own under ``home``:
    ``clearml.conf``, cache and a ``file://`` output storage (created). ``set_home``: also make
    ``home`` the process's HOME (its ``~/.clearml`` caches then stay out of the user's)."""
    home = home.resolve()
    storage = home / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    config = home / "clearml.conf"
    config.write_text(SDK_CONFIG)
    base = os.environ if inherit is None else inherit
    env = {k: v for k, v in base.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    env.update(server_env)
    env.update(
        CLEARML_CACHE_DIR=str(home / "cache"),
        CLEARML_CONFIG_FILE=str(config),
        CLEARML_DEFAULT_OUTPUT_URI=f"file://{storage}",
        PYTHONUNBUFFERED="1",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    if set_home:
        env["HOME"] = str(home)
    return env
