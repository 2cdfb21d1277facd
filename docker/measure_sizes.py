"""Measure each image's installed size as the size of a virtualenv built the way its Dockerfile builds
``/opt/venv``, and check what the image is promised to hold.

    python docker/measure_sizes.py                      # training, serving, services
    python docker/measure_sizes.py serving --keep --json sizes.json
    python docker/measure_sizes.py --modules serving    # the modules checked, for an image's smoke test

Per image, in a fresh folder under ``--workdir`` (default: a new temporary folder, removed unless
``--keep``):

1. ``python3.11 -m venv`` + ``pip install pip==25.3``, then ``pip install --only-binary=:all:
   -c requirements/constraints.txt -r <(docker/requirements.py GROUP)``, a ``.pth`` file that puts
   this checkout on the path and the ``occupancy-mlops`` script: what the Dockerfile does, the image
   having its code in /app instead;
2. checks, each a failure when broken: ``pip check``; every installed distribution pinned at its
   version in ``requirements/constraints.txt``; no forbidden distribution (TensorFlow and Keras in the
   serving and services images); the image's modules import in that venv (from outside the checkout)
   and leave no forbidden module (``tensorflow``, ``keras``) in ``sys.modules``; ``occupancy-mlops
   --help`` runs;
3. the size: every file under the venv counted once (``du``-like, apparent bytes), and the largest
   distributions in it.

Prints a table (and ``--json FILE``); exits 1 when a check fails. Needs python3.11 and the package
index (pip downloads what its cache lacks).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from requirements import canonical, requirements, write_scripts  # docker/requirements.py

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"
PIP = "pip==25.3"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Image:
    """One image: its Dockerfile, its pyproject group, the modules it runs and what it must not hold."""

    name: str
    group: str
    modules: tuple[str, ...]
    forbidden: frozenset[str] = frozenset()  # distributions (canonical names)
    forbidden_modules: frozenset[str] = frozenset()  # top-level modules never imported

    @property
    def dockerfile(self) -> Path:
        return ROOT / "docker" / f"{self.name}.Dockerfile"


NO_TENSORFLOW = frozenset({"tensorflow", "tensorflow-cpu", "keras", "tf-keras", "tensorboard"})
NO_TENSORFLOW_MODULES = frozenset({"tensorflow", "keras"})

IMAGES: dict[str, Image] = {
    image.name: image
    for image in (
        # clearml-agent executing the pipeline's controller (services queue) and steps (training queue)
        Image(
            "training",
            "training",
            (
                "occupancy_mlops.cli",
                "clearml_agent.commands.worker",
                "training.pipeline",
                "training.task",
                "training.train",
                "training.model",
                "training.gate",
                "training.registry",
            ),
        ),
        # ``python -m services.serving run``: uvicorn on clearml-serving's app with our middleware;
        # ``services.serving.app`` itself connects to ClearML at import, so its imports are listed
        Image(
            "serving",
            "serving",
            (
                "occupancy_mlops.cli",
                "services.serving.cli",
                "services.serving.launcher",
                "services.serving.middleware",
                "services.serving.processor",
                "services.serving.endpoint",
                "services.serving.preprocess_shim",
                "services.serving.deploy",
                "clearml_serving.serving.model_request_processor",
                "clearml_serving.serving.preprocess_service",
                "fastapi",
                "grpc.aio",
                "uvicorn",
                "uvloop",
                "httptools",
                "python_multipart",
                "prometheus_client.multiprocess",
            ),
            NO_TENSORFLOW,
            NO_TENSORFLOW_MODULES,
        ),
        # the trigger scheduler, the canary controller and the agent pools' autoscaler
        Image(
            "services",
            "services",
            (
                "occupancy_mlops.cli",
                "services.scheduler.cli",
                "services.scheduler.app",
                "services.scheduler.reconcile",
                "services.scheduler.template",
                "training.pipeline",  # the scheduler registers the pipeline template in a child process
                "services.canary.cli",
                "services.canary.app",
                "services.canary.reconcile",
                "services.serving.deploy",
                "kubernetes.client",
                "kubernetes.config",
            )
            + (("services.autoscaler",) if (ROOT / "services" / "autoscaler").is_dir() else ()),
            NO_TENSORFLOW,
            NO_TENSORFLOW_MODULES,
        ),
    )
}

IMPORT_CHECK = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


@dataclass
class Result:
    image: str
    group: str
    venv_bytes: int = 0
    site_packages_bytes: int = 0
    distributions: int = 0
    largest: list[tuple[str, int]] = field(default_factory=list)
    install_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def mib(self) -> float:
        return self.venv_bytes / MIB


def tree_bytes(path: Path) -> int:
    """Apparent size of every file under ``path``, each inode once (symlinks not followed)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            stat = os.lstat(os.path.join(folder, name))
            key = (stat.st_dev, stat.st_ino)
            if key not in seen:
                seen.add(key)
                total += stat.st_size
    return total


def read_constraints(path: Path = CONSTRAINTS) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonical(name)] = version.strip()
    return pins


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        raise RuntimeError(f"{venv}: no single site-packages folder")
    return found[0]


def installed(venv: Path) -> dict[str, tuple[str, list[Path]]]:
    """canonical name → (version, top-level paths it installed) from each dist-info's RECORD."""
    sp = site_packages(venv)
    out: dict[str, tuple[str, list[Path]]] = {}
    for info in sp.glob("*.dist-info"):
        meta = (info / "METADATA").read_text(errors="replace")
        name = re.search(r"^Name:\s*(.+)$", meta, re.M)
        version = re.search(r"^Version:\s*(.+)$", meta, re.M)
        if not name or not version:
            continue
        tops: set[Path] = {info}
        record = info / "RECORD"
        if record.is_file():
            for row in record.read_text(errors="replace").splitlines():
                rel = row.split(",", 1)[0]
                if rel and not rel.startswith(".."):
                    tops.add(sp / rel.split("/", 1)[0])
        out[canonical(name.group(1).strip())] = (version.group(1).strip(), sorted(tops))
    return out


def run(
    cmd: Sequence[str], cwd: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), text=True, capture_output=True, check=False, cwd=cwd, env=env)


def build(image: Image, venv: Path, python: str) -> Result:
    result = Result(image.name, image.group)
    if venv.exists():
        shutil.rmtree(venv)
    started = time.monotonic()
    steps = [
        [python, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-cache-dir", PIP],
    ]
    reqs = venv.parent / f"{image.name}-requirements.txt"
    reqs.write_text("\n".join(requirements(image.group)) + "\n")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-cache-dir"]
    steps.append([*pip, "--only-binary=:all:", "-c", str(CONSTRAINTS), "-r", str(reqs)])
    for step in steps:
        done = run(step)
        if done.returncode != 0:
            result.problems.append(f"{' '.join(step[:5])} ... failed: {done.stderr.strip()[-2000:]}")
            return result
    result.install_seconds = time.monotonic() - started
    (site_packages(venv) / "occupancy-mlops-code.pth").write_text(str(ROOT) + "\n")
    write_scripts(venv / "bin")
    check(image, venv, result)
    measure(venv, result)
    return result


def check(image: Image, venv: Path, result: Result) -> None:
    python = str(venv / "bin" / "python")
    done = run([python, "-m", "pip", "check"])
    if done.returncode != 0:
        result.problems.append(f"pip check: {done.stdout.strip()}")
    pins = read_constraints()
    dists = installed(venv)
    for name, (version, _paths) in sorted(dists.items()):
        if name == "pip":
            if version != PIP.split("==")[1]:
                result.problems.append(f"pip {version} installed, {PIP} expected")
        elif pins.get(name) != version:
            result.problems.append(f"{name} {version} is not pinned in {CONSTRAINTS.name} ({pins.get(name)})")
    for name in sorted(image.forbidden & set(dists)):
        result.problems.append(f"{name} is installed: the {image.name} image must not carry it")
    # the modules run from a folder outside the checkout: the code is reached through the .pth only
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    done = run([python, "-c", IMPORT_CHECK, *image.modules], cwd=str(venv), env=env)
    if done.returncode != 0:
        result.problems.append(f"import failed: {done.stderr.strip()[-1500:]}")
        return
    imported = set(json.loads(done.stdout.strip().splitlines()[-1]))
    for name in sorted(image.forbidden_modules & imported):
        result.problems.append(f"importing the {image.name} image's modules imported {name}")
    done = run([str(venv / "bin" / "occupancy-mlops"), "--help"], cwd=str(venv), env=env)
    if done.returncode != 0:
        result.problems.append(f"occupancy-mlops --help failed: {done.stderr.strip()[-1500:]}")


def measure(venv: Path, result: Result) -> None:
    result.venv_bytes = tree_bytes(venv)
    result.site_packages_bytes = tree_bytes(site_packages(venv))
    dists = installed(venv)
    result.distributions = len(dists)
    sizes = []
    for name, (version, paths) in dists.items():
        total = sum(tree_bytes(p) if p.is_dir() else p.stat().st_size for p in paths if p.exists())
        sizes.append((f"{name} {version}", total))
    result.largest = sorted(sizes, key=lambda item: -item[1])[:5]


def table(results: Sequence[Result]) -> str:
    lines = [
        "| image | group | venv (MiB) | distributions | largest distributions (MiB) | checks |",
        "| --- | --- | ---: | ---: | --- | --- |",
    ]
    for r in results:
        largest = ", ".join(f"{name} {size / MIB:.0f}" for name, size in r.largest)
        checks = "ok" if not r.problems else f"{len(r.problems)} FAILED"
        row = [r.image, f"`[{r.group}]`", f"{r.mib:.0f}", str(r.distributions), largest, checks]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", metavar="IMAGE", help=f"{', '.join(IMAGES)} (default: all)")
    parser.add_argument("--workdir", type=Path, help="where the venvs go (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the venvs")
    parser.add_argument("--json", type=Path, help="write the results to this file as JSON")
    parser.add_argument("--python", default="python3.11", help="interpreter of the venvs (the images' 3.11)")
    parser.add_argument("--modules", action="store_true", help="print the images' modules, build nothing")
    args = parser.parse_args(argv)
    names = args.images or list(IMAGES)
    unknown = [name for name in names if name not in IMAGES]
    if unknown:
        parser.error(f"unknown image {unknown[0]!r}: choose from {', '.join(IMAGES)}")
    if args.modules:
        print(" ".join(dict.fromkeys(m for name in names for m in IMAGES[name].modules)))
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="occupancy-image-venvs-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for name in names:
            print(f"building the {name} venv in {workdir / name} ...", file=sys.stderr, flush=True)
            result = build(IMAGES[name], workdir / name, args.python)
            print(
                f"  {result.mib:.0f} MiB, {result.distributions} distributions, "
                f"{result.install_seconds:.0f} s, {len(result.problems)} problems",
                file=sys.stderr,
                flush=True,
            )
            results.append(result)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(results))
    for r in results:
        for problem in r.problems:
            print(f"FAILED {r.image}: {problem}")
        if not r.problems and IMAGES[r.image].forbidden:
            print(f"ok {r.image}: no {', '.join(sorted(IMAGES[r.image].forbidden))} installed or imported")
    if args.json:
        rows = [asdict(r) | {"mib": round(r.mib, 1)} for r in results]
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
