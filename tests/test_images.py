"""The images (docker/*.Dockerfile, docs/images.md): hadolint finds nothing; each image installs
exactly its pyproject group at the versions of requirements/constraints.txt; its modules import only
what that group installs and it copies every module they can import; it runs as the chart's non-root
user from a digest-pinned base; the serving and services images carry no TensorFlow.

No Docker engine here: the Dockerfiles are linted and read, and the groups are checked against the
installed packages' own metadata (the .venv holds every group at the pinned versions). The venvs
themselves are built and measured by ``python docker/measure_sizes.py`` (minutes, not a test)."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent
LOCAL_PACKAGES = ("occupancy_mlops", "services", "training")
TENSORFLOW = {"tensorflow", "tensorflow-cpu", "keras", "tf-keras", "tensorboard"}
VENV_BASELINE = {"pip", "setuptools"}  # what `python3.11 -m venv` puts in every venv


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docker_{name}", DOCKER / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


REQS = load("requirements")
MEASURE = load("measure_sizes")
IMAGES = MEASURE.IMAGES


# ------------------------------------------------------------------------------------ Dockerfiles
@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(path: Path) -> list[Stage]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current = f"{current} {line}" if current else line
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        logical.append(current)
        current = ""
    assert not current, f"{path}: a continuation line ends the file"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            stages.append(Stage(words[0], words[2] if len(words) == 3 and words[1].upper() == "AS" else None))
        elif stages:
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def dockerfile(image: str) -> Path:
    return IMAGES[image].dockerfile


def run_commands(stage: Stage) -> list[str]:
    """Each shell command of the stage's RUN instructions (split at &&)."""
    return [part.strip() for run in stage.args("RUN") for part in run.split("&&")]


def hadolint(path: Path) -> list[dict[str, object]]:
    done = subprocess.run(
        [str(BIN / "hadolint"), "--no-fail", "-f", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout or "[]"))


@pytest.mark.parametrize("image", list(IMAGES))
def test_hadolint_finds_nothing(image: str) -> None:
    findings = hadolint(dockerfile(image))
    serious = [f for f in findings if f["level"] in ("error", "warning")]
    assert not serious, "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in serious)
    assert not findings, f"info/style findings: {findings}"


def test_hadolint_flags_what_the_images_avoid(tmp_path: Path) -> None:
    """The lint is not vacuous: a latest tag, an unpinned pip install and a root user are each found."""
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    codes = {f["code"] for f in hadolint(bad)}
    assert {"DL3007", "DL3013", "DL3002"} <= codes, codes


@pytest.mark.parametrize("image", list(IMAGES))
def test_base_is_pinned_by_digest_in_both_stages(image: str) -> None:
    stages = parse(dockerfile(image))
    assert [s.name for s in stages] == ["build", None], "a build stage, then the runtime stage"
    bases = {s.base for s in stages}
    assert len(bases) == 1, f"both stages from one base: {bases}"
    base = bases.pop()
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    labels = " ".join(stages[-1].args("LABEL"))
    name, digest = base.split("@")
    assert f'org.opencontainers.image.base.digest="{digest}"' in labels
    assert f'org.opencontainers.image.base.name="docker.io/library/{name}"' in labels
    # the three images share it (one base to refresh, one layer cache)
    assert {parse(dockerfile(other))[0].base for other in IMAGES} == {base}


@pytest.mark.parametrize("image", list(IMAGES))
def test_installs_exactly_its_group_from_the_constraints(image: str) -> None:
    build, runtime = parse(dockerfile(image))
    commands = run_commands(build)
    group = IMAGES[image].group
    assert f"python docker/requirements.py {group} > requirements.txt" in commands
    assert [
        c for c in commands if "docker/requirements.py" in c and not c.endswith("--scripts /opt/venv/bin")
    ] == [f"python docker/requirements.py {group} > requirements.txt"], "one group, the image's own"
    installs = [c for c in commands if "pip install" in c]
    assert installs == [
        "/opt/venv/bin/python -m pip install --no-cache-dir pip==25.3",
        "/opt/venv/bin/python -m pip install --no-cache-dir --only-binary=:all: "
        "-c requirements/constraints.txt -r requirements.txt",
    ]
    assert "COPY requirements/constraints.txt requirements/" in build.args("COPY") or any(
        c.startswith("requirements/constraints.txt ") for c in build.args("COPY")
    )
    # the runtime stage installs nothing: it copies the venv and the code from the build stage
    assert not [c for c in run_commands(runtime) if re.search(r"\b(pip|apt-get|apt|curl|wget)\b", c)]
    assert set(runtime.args("COPY")) == {"--from=build /opt/venv /opt/venv", "--from=build /app /app"}


@pytest.mark.parametrize("image", list(IMAGES))
def test_runs_as_the_charts_non_root_user_with_writable_scratch_only(image: str) -> None:
    runtime = parse(dockerfile(image))[-1]
    users = runtime.args("USER")
    assert len(users) == 1 and re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", users[0]), users
    uid, gid = (int(x) for x in users[0].split(":"))
    values = yaml.safe_load((ROOT / "charts/occupancy-mlops/values.yaml").read_text())
    assert (uid, gid) == (values["securityContext"]["runAsUser"], values["securityContext"]["runAsGroup"])
    assert runtime.instructions[-1][0] == "CMD" and json.loads(runtime.instructions[-1][1])
    user_index = runtime.instructions.index(("USER", users[0]))
    assert all(kw != "RUN" for kw, _ in runtime.instructions[user_index:]), "nothing runs as root after USER"
    env = " ".join(runtime.args("ENV"))
    for setting in (
        "HOME=/home/app",
        "TMPDIR=/tmp",
        "XDG_CACHE_HOME=/tmp/.cache",
        "PYTHONDONTWRITEBYTECODE=1",
    ):
        assert setting in env, f"{setting} missing: {env}"
    assert "PATH=/opt/venv/bin:$PATH" in env
    assert any(f"--uid {uid} --gid {gid}" in c and "--home-dir /home/app" in c for c in run_commands(runtime))
    labels = " ".join(runtime.args("LABEL"))
    for key in ("title", "description", "version", "revision", "created", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert f'org.opencontainers.image.title="occupancy-mlops-{image}"' in labels


@pytest.mark.parametrize("image", list(IMAGES))
def test_healthcheck_only_where_an_http_port_is_the_image_s_own(image: str) -> None:
    runtime = parse(dockerfile(image))[-1]
    checks = runtime.args("HEALTHCHECK")
    if image != "serving":
        assert checks == [], "no HEALTHCHECK: the agent serves no HTTP; services run on their own ports"
        return
    assert len(checks) == 1 and runtime.args("EXPOSE") == ["8080"]
    assert "http://127.0.0.1:8080/healthz" in checks[0]
    cmd = json.loads(runtime.instructions[-1][1])
    assert cmd[:4] == ["python", "-m", "services.serving", "run"] and cmd[cmd.index("--port") + 1] == "8080"


# ------------------------------------------------------------------------------- groups and imports
def canonical(name: str) -> str:
    return str(REQS.canonical(name))


@cache
def resolved(group: str | None) -> frozenset[str]:
    """Every distribution ``pip install .[group]`` brings (base included), from the installed
    packages' metadata: the requirements, their requirements, extras and markers evaluated."""
    todo = [Requirement(line) for line in REQS.requirements(group)]
    extras: dict[str, set[str]] = {}
    while todo:
        req = todo.pop()
        name = canonical(req.name)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        wanted = set(req.extras)
        if name in extras and wanted <= extras[name]:
            continue
        extras.setdefault(name, set()).update(wanted)
        for line in metadata.distribution(name).requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras[name] | {""}):
                sub.marker = None
                todo.append(sub)
    return frozenset(extras)


def test_every_group_is_pinned_as_the_constraints_pin_it() -> None:
    pins = MEASURE.read_constraints()
    for group in [None, *REQS.groups()]:
        for line in REQS.requirements(group):
            req = Requirement(line)
            versions = [s.version for s in req.specifier if s.operator == "=="]
            assert versions, f"[{group}] {line}: not pinned with =="
            assert pins.get(canonical(req.name)) == versions[0], f"[{group}] {line} vs constraints"
        unpinned = sorted(resolved(group) - set(pins))
        assert not unpinned, f"[{group}] installs distributions the constraints do not pin: {unpinned}"


def test_serving_and_services_carry_no_tensorflow() -> None:
    for group in ("serving", "services"):
        assert not TENSORFLOW & REQS.requirement_names(group), f"[{group}] declares TensorFlow"
        assert not TENSORFLOW & resolved(group), f"[{group}] pulls TensorFlow in"
    assert "tensorflow-cpu" in resolved("training")  # the check sees TensorFlow where it is


def test_dev_installs_every_group() -> None:
    """`make install` installs .[dev]: every test finds every package of every image."""
    dev = REQS.requirement_names("dev")
    for group in REQS.groups():
        assert REQS.requirement_names(group) <= dev, group
    assert "-e '.[dev]'" in (ROOT / "Makefile").read_text()


NOT_INSTALLED = """
import importlib, json, sys
blocked = set(json.loads(sys.argv[1]))
refused = set()

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in blocked:
            refused.add(top)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
for name in sys.argv[2:]:
    importlib.import_module(name)
print(json.dumps({"imported": sorted({m.split(".")[0] for m in sys.modules}), "refused": sorted(refused)}))
"""


@pytest.mark.parametrize("image", list(IMAGES))
def test_modules_import_with_only_what_the_group_installs(image: str, tmp_path: Path) -> None:
    """The image's modules import in this interpreter with every package that its group does not
    install hidden (an import of one raises ModuleNotFoundError, as in the image's venv): optional
    imports fall back, a hard one fails the test."""
    spec = IMAGES[image]
    allowed = resolved(spec.group) | VENV_BASELINE
    blocked = sorted(
        module
        for module, dists in metadata.packages_distributions().items()
        if module not in LOCAL_PACKAGES and not {canonical(d) for d in dists} & allowed
    )
    done = subprocess.run(
        [sys.executable, "-c", NOT_INSTALLED, json.dumps(blocked), *spec.modules],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, f"[{spec.group}] is not enough for the {image} image: {done.stderr[-3000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    imported = set(result["imported"])
    assert not spec.forbidden_modules & imported, f"{image} imports {spec.forbidden_modules & imported}"
    assert not imported & set(blocked)
    if image == "training":  # the hiding is real: TensorFlow imported here, hidden from the others
        assert "tensorflow" in imported
    else:
        assert "tensorflow" in blocked


# ------------------------------------------------------------------------------ code in the images
def local_imports(module: str, deep: bool) -> set[str]:
    """Modules of this project that ``module`` imports: anywhere in its source (``deep``: functions
    too), or at module level only."""
    path = module_file(module)
    tree = ast.parse(path.read_text())
    nodes = list(ast.walk(tree)) if deep else _module_level(tree.body)
    found = set()
    for node in nodes:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            package = module.split(".")
            base = ".".join(package[: len(package) - node.level + (path.name == "__init__.py")])
            target = f"{base}.{node.module}" if node.module else base
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in LOCAL_PACKAGES and module_file(name, missing_ok=True).name:
                found.add(name)
    return found


def _module_level(body: list[ast.stmt]) -> list[ast.AST]:
    """Statements run at import (``if``/``try`` blocks included, ``if TYPE_CHECKING`` not)."""
    out: list[ast.AST] = []
    for node in body:
        if isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                out += _module_level(node.body) + _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            out += _module_level(node.body) + _module_level(node.orelse) + _module_level(node.finalbody)
            for handler in node.handlers:
                out += _module_level(handler.body)
        else:
            out.append(node)
    return out


def module_file(module: str, missing_ok: bool = False) -> Path:
    base = ROOT.joinpath(*module.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    if missing_ok:
        return Path()
    raise FileNotFoundError(module)


# The command line is every image's, its subcommands each image's own: only what it imports at
# module level (``occupancy-mlops --help`` works) must be in every image.
SHALLOW = {"occupancy_mlops.cli"}


def closure(modules: tuple[str, ...]) -> set[Path]:
    """Files of every project module reachable from ``modules`` (and their packages' __init__):
    through imports anywhere in a module, or at module level only from a SHALLOW root."""
    todo = [(m, m not in SHALLOW) for m in modules if m.split(".")[0] in LOCAL_PACKAGES]
    seen: dict[str, bool] = {}
    while todo:
        module, deep = todo.pop()
        if seen.get(module) in (True, deep) or not module_file(module, missing_ok=True).name:
            continue
        seen[module] = deep or seen.get(module, False)
        parts = module.split(".")
        todo.extend((".".join(parts[:i]), False) for i in range(1, len(parts)))
        todo.extend((name, deep) for name in local_imports(module, deep))
    return {module_file(m).relative_to(ROOT) for m in seen}


def dockerignore_sends(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    sent = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        regex = re.escape(body).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, c) for c in candidates):
            sent = negated
    return sent


@pytest.mark.parametrize("image", list(IMAGES))
def test_copies_every_module_its_component_imports(image: str) -> None:
    build = parse(dockerfile(image))[0]
    copied = {}
    for args in build.args("COPY"):
        source, dest = args.split()
        if dest.startswith("/app/"):
            copied[source.rstrip("/")] = dest
    removed = [c.split()[-1] for c in run_commands(build) if c.startswith("rm -rf /app/")]
    patterns = [
        line.strip()
        for line in Path(f"{dockerfile(image)}.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    files = closure(IMAGES[image].modules)
    assert Path("services/serving/endpoint.py") in files or image != "serving"  # the closure is real
    missing = []
    for rel in sorted(files):
        copied_from = next((s for s in copied if rel.as_posix().startswith(s + "/")), None)
        in_image = copied_from is not None and not any(
            f"/app/{rel.as_posix()}".startswith(r.rstrip("/") + "/") for r in removed
        )
        if not in_image or not dockerignore_sends(patterns, rel.as_posix()):
            missing.append(rel.as_posix())
    assert not missing, f"the {image} image lacks modules its component imports: {missing}"
    # and the development-only local server stays out of every image
    assert not any(c == "local_server" or c.startswith("local_server/") for c in copied)
    assert not dockerignore_sends(patterns, "local_server/app.py")
    assert not dockerignore_sends(patterns, ".venv/bin/python")


def test_ignore_file_is_the_same_for_every_image() -> None:
    texts = {Path(f"{dockerfile(image)}.dockerignore").read_text() for image in IMAGES}
    assert len(texts) == 1


# --------------------------------------------------------------------------------- the scripts
def test_requirements_script_prints_a_group_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    script = DOCKER / "requirements.py"
    done = subprocess.run([sys.executable, str(script), "serving"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == REQS.requirements("serving")
    assert "clearml-serving==1.3.5" in done.stdout.split() and "tensorflow" not in done.stdout
    done = subprocess.run([sys.executable, str(script), "gpu"], capture_output=True, text=True)
    assert done.returncode == 2 and "no optional dependency group 'gpu'" in done.stderr
    assert "training, serving, services" in done.stderr
    # the console scripts, as the Dockerfiles write them beside the venv's python
    done = subprocess.run(
        [sys.executable, str(script), "--scripts", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    cli = tmp_path / "occupancy-mlops"
    assert cli.stat().st_mode & 0o111 and cli.read_text().startswith(f"#!{tmp_path / 'python'}\n")
    done = subprocess.run([sys.executable, str(cli), "--help"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and "serving" in done.stdout and "autoscaler" in done.stdout


def test_measure_sizes_lists_the_modules_and_refuses_an_unknown_image() -> None:
    script = DOCKER / "measure_sizes.py"
    done = subprocess.run(
        [sys.executable, str(script), "--modules", "serving"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.split() == list(IMAGES["serving"].modules)
    done = subprocess.run([sys.executable, str(script), "gpu"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown image 'gpu'" in done.stderr
