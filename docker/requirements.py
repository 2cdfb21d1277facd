"""The requirements of one image: ``pyproject.toml``'s base dependencies plus one optional group.

    python docker/requirements.py serving > requirements.txt
    pip install -c requirements/constraints.txt -r requirements.txt
    python docker/requirements.py --scripts /opt/venv/bin

The first prints one requirement a line, with the group's references to other groups of the project
(``occupancy-mlops[training,serving]``) expanded, so pip installs exactly what
``pip install '.[serving]'`` would, without building the project: its code is copied into the image
and put on the path by a ``.pth`` file, so no build backend (whose version the constraints could not
pin) is fetched. ``--scripts BINDIR`` writes the console scripts of ``[project.scripts]``
(``occupancy-mlops``) into BINDIR, as pip would, run by BINDIR's ``python``. Standard library only:
the Dockerfiles run it with the base image's bare Python.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")


def canonical(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def load_project(pyproject: Path = PYPROJECT) -> dict[str, object]:
    with pyproject.open("rb") as handle:
        project = tomllib.load(handle)["project"]
    if not isinstance(project, dict):
        raise ValueError(f"{pyproject}: no [project] table")
    return project


def groups(pyproject: Path = PYPROJECT) -> list[str]:
    """The optional dependency groups, in file order."""
    return list(_extras(load_project(pyproject)))


def _extras(project: dict[str, object]) -> dict[str, list[str]]:
    extras = project.get("optional-dependencies") or {}
    if not isinstance(extras, dict):
        raise ValueError("[project.optional-dependencies] is not a table")
    return {str(k): [str(r) for r in v] for k, v in extras.items()}


def requirements(group: str | None, pyproject: Path = PYPROJECT) -> list[str]:
    """Base dependencies plus ``group`` (None: the base alone), self-references expanded, each
    requirement once, in first-seen order."""
    project = load_project(pyproject)
    own = canonical(str(project["name"]))
    extras = _extras(project)
    out: list[str] = []
    seen_groups: set[str] = set()

    def add(lines: Sequence[str]) -> None:
        for line in lines:
            match = NAME.match(line)
            if match is None:
                raise ValueError(f"{pyproject}: cannot read the requirement {line!r}")
            if canonical(match.group(1)) == own:
                for name in (match.group(2) or "").split(","):
                    if name.strip():
                        add_group(name.strip())
            elif line not in out:
                out.append(line)

    def add_group(name: str) -> None:
        if name not in extras:
            known = ", ".join(extras)
            raise KeyError(f"no optional dependency group {name!r} in {pyproject} (groups: {known})")
        if name in seen_groups:
            return
        seen_groups.add(name)
        add(extras[name])

    base = project.get("dependencies") or []
    if not isinstance(base, list):
        raise ValueError("[project] dependencies is not a list")
    add([str(r) for r in base])
    if group:
        add_group(group)
    return out


def requirement_names(group: str | None, pyproject: Path = PYPROJECT) -> set[str]:
    """Canonical names of :func:`requirements` (extras such as ``uvicorn[standard]`` dropped)."""
    names = set()
    for line in requirements(group, pyproject):
        match = NAME.match(line)
        assert match is not None  # requirements() refused unreadable lines
        names.add(canonical(match.group(1)))
    return names


def write_scripts(bindir: Path, pyproject: Path = PYPROJECT) -> list[Path]:
    """The console scripts of ``[project.scripts]`` in ``bindir`` (``name = "module:function"``),
    each run by ``bindir/python``, as pip writes them."""
    scripts = load_project(pyproject).get("scripts") or {}
    if not isinstance(scripts, dict):
        raise ValueError("[project.scripts] is not a table")
    written = []
    for name, target in scripts.items():
        module, _, function = str(target).partition(":")
        if not module or not function.isidentifier():
            raise ValueError(f"{pyproject}: script {name} = {target!r} is not 'module:function'")
        path = bindir / str(name)
        path.write_text(
            f"#!{bindir / 'python'}\nimport sys\n\nfrom {module} import {function}\n\n"
            f'if __name__ == "__main__":\n    sys.exit({function}())\n'
        )
        path.chmod(0o755)
        written.append(path)
    return written


USAGE = "usage: python docker/requirements.py GROUP | --scripts BINDIR"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 2 and args[0] == "--scripts":
        for path in write_scripts(Path(args[1])):
            print(path)
        return 0
    if len(args) != 1 or args[0].startswith("-"):
        print(f"{USAGE}   (groups: {', '.join(groups())})", file=sys.stderr)
        return 2
    try:
        lines = requirements(args[0])
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
