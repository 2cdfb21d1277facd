"""A corpus of bad scheduler settings, in the YAML file and in the environment: every one stops
``scheduler run`` (and ``once``) with exit status 2 and one line naming the key, never a traceback and
never a scheduler that starts with it.

The corpus is generated: every numeric setting with wrong types, booleans, non-finite numbers and
values out of bounds; every text setting with wrong types, control characters and invalid text; tags
and ``parameters`` in every wrong shape; non-string YAML keys, duplicate keys, unknown keys, YAML that
is not a mapping or not YAML; files that are not UTF-8, a directory, a device, too big, missing; and
the same mistakes through ``OCCUPANCY_SCHEDULER_*`` variables.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.scheduler import app as scheduler_app_module
from services.scheduler.cli import scheduler_app


@dataclass(frozen=True)
class Bad:
    name: str
    named: str
    """What the one error line must contain: the key (or the file, for a file that is not settings)."""
    yaml: str | bytes | None = None
    env: dict[str, str] = field(default_factory=dict)
    path: str | None = None
    """A path instead of a file with ``yaml``: ``{dir}`` is the test's folder."""


NUMBERS = {
    # setting: values out of bounds (beyond wrong types, booleans and non-finite numbers)
    "poll_interval_seconds": ["0", "-3", "0.01", "3601"],
    "lookback_hours": ["0", "-1", "87601", "1e308"],
    "max_versions_per_poll": ["0", "10001", "1.5", "1e30"],
    "claim_grace_seconds": ["-1", "86401"],
    "port": ["-1", "65536", "80.5"],
    "unready_after_failures": ["0", "1001"],
    "register_timeout_seconds": ["0", "0.5", "3601"],
}
WRONG_TYPES = ["true", "false", "soon", "[1]", "{a: 1}", "null", ".inf", "-.inf", ".nan"]
TEXTS = {
    "project": ['""', "1", "[a]", "{a: b}", "null", '"a\\0b"', '"a\\uD800b"', '"line\\nbreak"'],
    "queue": ['""', "1", "[a]", '"a\\x07b"'],
    "steps_queue": ['""', "true", '"\\t"'],
    "template_tag": ['""', '"-x"', '"__$all"', '" padded"', "[a]"],
    "template_id": ["abc", '"0123"', "1", '"' + "g" * 32 + '"'],
    "dataset_parameter": ["dataset_id", '"/x"', '"Args/"', '"Args /x"', "1"],
    "host": ['""', '"bad host"', "1", '"a/b"'],
    "log_level": ["verbose", "INFO", "1", '""'],
    "register_template": ["maybe", "2", "[true]", "null"],
}
TAGS = [
    "[]",
    '""',
    '[""]',
    '["-Production"]',
    '["__$not"]',
    '[" Production"]',
    "Production",
    "[1]",
    "[null]",
    "{a: b}",
    "[[a]]",
    '["a\\0"]',
]
PARAMETERS = [
    "[]",
    "x",
    "{noslash: v}",
    '{"/name": v}',
    '{"Args/": v}',
    '{"Args/x": 1}',
    '{"Args/x": null}',
    '{"Args/x": [a]}',
    '{"Args/dataset_id": v}',
    "{1: v}",
    '{"Args/x": "a\\0"}',
]


BOMB_LINES = [
    "&a [x, x, x, x, x, x, x, x, x]",
    *(f"&{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcd", "bcde", strict=True)),
]
BOMB = "".join(f"{key}: {line}\n" for key, line in zip("abcde", BOMB_LINES, strict=True))
"""Billion laughs: 9**5 strings through five aliases (PyYAML shares them; an error message must not
expand them)."""


def corpus() -> list[Bad]:
    cases: list[Bad] = []
    for key, bounds in NUMBERS.items():
        for value in [*WRONG_TYPES, *bounds]:
            cases.append(Bad(f"{key}={value}", key, yaml=f"{key}: {value}\n"))
    for key, values in TEXTS.items():
        for value in values:
            cases.append(Bad(f"{key}={value}", key, yaml=f"{key}: {value}\n"))
    cases += [Bad(f"tags={v}", "tags", yaml=f"tags: {v}\n") for v in TAGS]
    cases += [Bad(f"parameters={v}", "parameters", yaml=f"parameters: {v}\n") for v in PARAMETERS]
    # the file itself
    cases += [
        Bad("int key", "setting names are text", yaml="project: Rooms\n1: x\n"),
        Bad("bool key", "setting names are text", yaml="true: x\n"),
        Bad("null key", "setting names are text", yaml="~: x\n"),
        Bad("float key", "setting names are text", yaml="1.5: x\n"),
        Bad("date key", "setting names are text", yaml="2020-01-01: x\n"),
        Bad("list key", "not valid YAML", yaml="? [a, b]\n: x\n"),
        Bad("duplicate key", "'queue' is given twice", yaml="queue: a\nqueue: b\n"),
        Bad("unknown key", "pol_interval_seconds: unknown setting", yaml="pol_interval_seconds: 3\n"),
        Bad("wrong case", "Project: unknown setting", yaml="Project: Rooms\n"),
        Bad("a list", "must hold a mapping", yaml="- project: Rooms\n"),
        Bad("a scalar", "must hold a mapping", yaml="Rooms\n"),
        Bad("syntax", "not valid YAML", yaml="project: [unclosed\n"),
        Bad("tab indent", "not valid YAML", yaml="project:\n\t- a\n"),
        Bad("python tag", "not valid YAML", yaml="project: !!python/object/apply:os.system [ls]\n"),
        Bad("alias bomb keys", "a: unknown setting", yaml=BOMB),
        Bad("alias bomb in tags", "tags.0", yaml="tags:\n" + "".join(f"- {line}\n" for line in BOMB_LINES)),
        Bad("latin-1", "not UTF-8", yaml="project: caf\xe9\n".encode("latin-1")),
        Bad("utf-16", "not UTF-8", yaml="project: Rooms\n".encode("utf-16")),
        Bad("binary", "not UTF-8", yaml=b"\x89PNG\r\n\x1a\n\x00\x00\xff"),
        Bad("directory", "is a directory", path="{dir}"),
        Bad("device", "not a regular file", path="/dev/zero"),
        Bad("missing", "does not exist", path="{dir}/nope.yaml"),
        Bad("too big", "larger than", yaml="# padding\n" * 200_000),
    ]
    env = "OCCUPANCY_SCHEDULER_"
    cases += [
        Bad("env port text", "port", env={f"{env}PORT": "eighty"}),
        Bad("env port big", "port", env={f"{env}PORT": "99999"}),
        Bad("env port exp", "port", env={f"{env}PORT": "1e3"}),
        Bad("env interval inf", "poll_interval_seconds", env={f"{env}POLL_INTERVAL_SECONDS": "inf"}),
        Bad("env interval nan", "poll_interval_seconds", env={f"{env}POLL_INTERVAL_SECONDS": "nan"}),
        Bad("env interval empty", "poll_interval_seconds", env={f"{env}POLL_INTERVAL_SECONDS": ""}),
        Bad("env interval zero", "poll_interval_seconds", env={f"{env}POLL_INTERVAL_SECONDS": "0"}),
        Bad("env lookback inf", "lookback_hours", env={f"{env}LOOKBACK_HOURS": "Infinity"}),
        Bad("env lookback -inf", "lookback_hours", env={f"{env}LOOKBACK_HOURS": "-inf"}),
        Bad("env grace", "claim_grace_seconds", env={f"{env}CLAIM_GRACE_SECONDS": "-1"}),
        Bad("env max versions", "max_versions_per_poll", env={f"{env}MAX_VERSIONS_PER_POLL": "0"}),
        Bad("env unready", "unready_after_failures", env={f"{env}UNREADY_AFTER_FAILURES": "0"}),
        Bad("env timeout", "register_timeout_seconds", env={f"{env}REGISTER_TIMEOUT_SECONDS": "nan"}),
        Bad("env register", "register_template", env={f"{env}REGISTER_TEMPLATE": "maybe"}),
        Bad("env tags empty", "tags", env={f"{env}TAGS": " , "}),
        Bad("env tags operator", "tags", env={f"{env}TAGS": "Production,-draft"}),
        Bad("env template id", "template_id", env={f"{env}TEMPLATE_ID": "xyz"}),
        Bad("env log level", "log_level", env={f"{env}LOG_LEVEL": "verbose"}),
        Bad("env dataset parameter", "dataset_parameter", env={f"{env}DATASET_PARAMETER": "id"}),
        Bad("env parameters json", "OCCUPANCY_SCHEDULER_PARAMETERS", env={f"{env}PARAMETERS": "{nope"}),
        Bad("env parameters list", "parameters", env={f"{env}PARAMETERS": "[1, 2]"}),
        Bad("env parameters string", "parameters", env={f"{env}PARAMETERS": '"Args/x"'}),
        Bad("env parameters no slash", "parameters", env={f"{env}PARAMETERS": '{"x": "1"}'}),
        Bad("env parameters number", "parameters", env={f"{env}PARAMETERS": '{"Args/x": 1}'}),
        Bad("env parameters nan", "parameters", env={f"{env}PARAMETERS": '{"Args/x": NaN}'}),
        Bad("env parameters dataset", "parameters", env={f"{env}PARAMETERS": '{"Args/dataset_id": "x"}'}),
        Bad("env parameters deep", "OCCUPANCY_SCHEDULER_PARAMETERS", env={f"{env}PARAMETERS": "[" * 100_000}),
        Bad("env unknown", "OCCUPANCY_SCHEDULER_QUEUES: unknown setting", env={f"{env}QUEUES": "x"}),
        Bad("env empty name", "OCCUPANCY_SCHEDULER_: unknown setting", env={env: "x"}),
        Bad("env surrogate", "OCCUPANCY_SCHEDULER_PROJECT: not UTF-8", env={f"{env}PROJECT": "caf\udce9"}),
        Bad("env control", "queue", env={f"{env}QUEUE": "a\x1bb"}),
        Bad("env config dir", "is a directory", env={"OCCUPANCY_SCHEDULER_CONFIG": "{dir}"}),
        Bad("env config missing", "does not exist", env={"OCCUPANCY_SCHEDULER_CONFIG": "{dir}/no.yaml"}),
        Bad("env host", "host", env={f"{env}HOST": "two words"}),
    ]
    return cases


CORPUS = corpus()


def test_the_corpus_is_large_and_distinct():
    assert len(CORPUS) >= 100
    assert len({c.name for c in CORPUS}) == len(CORPUS)
    assert sum(1 for c in CORPUS if c.env) >= 30, "environment variables are attacked too"


def _arguments(case: Bad, folder: Path) -> tuple[list[str], dict[str, str]]:
    env = {k: v.replace("{dir}", str(folder)) for k, v in case.env.items()}
    if case.path is not None:
        return ["--config", case.path.replace("{dir}", str(folder))], env
    if case.yaml is not None:
        config = folder / "scheduler.yaml"
        data = case.yaml if isinstance(case.yaml, bytes) else case.yaml.encode()
        config.write_bytes(data)
        return ["--config", str(config)], env
    return [], env


@pytest.fixture
def never_serve(monkeypatch):
    """A setting the corpus means as bad but the scheduler accepts would start serving: fail instead."""

    def accepted(settings):
        raise AssertionError(f"the scheduler accepted {settings!r}")

    monkeypatch.setattr(scheduler_app_module, "serve", accepted)
    for key in [k for k in os.environ if k.startswith("OCCUPANCY_SCHEDULER_")]:
        monkeypatch.delenv(key)


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_every_bad_setting_exits_2_with_one_line_naming_the_key(case, tmp_path, never_serve):
    args, env = _arguments(case, tmp_path)
    for command in ("run", "once"):
        result = CliRunner().invoke(scheduler_app, [command, *args], env=env)
        assert result.exit_code == 2, (command, result.exit_code, result.output, result.exception)
        assert isinstance(result.exception, SystemExit), result.exception
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert case.named in lines[0], lines[0]
        assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("project: Rooms\n1: x\n", "setting names are text"),
        (b"project: caf\xe9\n", "not UTF-8"),
        (None, "is a directory"),
        ("lookback_hours: .inf\n", "lookback_hours"),
    ],
)
def test_the_process_exits_2_without_a_traceback(tmp_path, text, named):
    """The same through ``python -m services.scheduler run``, as its pod runs it (no server needed)."""
    config = tmp_path / "scheduler.yaml"
    if text is None:
        config = tmp_path
    else:
        config.write_bytes(text if isinstance(text, bytes) else text.encode())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCCUPANCY_", "CLEARML_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "services.scheduler", "run", "--config", str(config)],
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.count("\n") == 1 and named in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_port_in_use_or_no_server_at_all_exits_2_with_one_line(tmp_path):
    """Found when the process starts (binding) or by its first poll (logging in): the same contract."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCCUPANCY_", "CLEARML_"))}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    run = [sys.executable, "-m", "services.scheduler", "run"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [*run, "--port", str(port)],
            env={**env, "OCCUPANCY_SCHEDULER_HOST": "127.0.0.1"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 2, proc.stderr[-3000:]
    expected = f"error: host, port: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert proc.stderr.splitlines()[-1] == expected
    proc = subprocess.run(
        [*run, "--port", "0"],
        env={**env, "OCCUPANCY_SCHEDULER_HOST": "127.0.0.1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines()[-1].startswith("error: no ClearML server configured: start the local one")
    assert "Traceback" not in proc.stderr + proc.stdout
