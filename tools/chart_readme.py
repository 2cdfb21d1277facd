"""Generate charts/occupancy-mlops/README.md from the chart's values.yaml ``# --`` comments.

Every value of values.yaml is documented by a ``# -- text`` comment right above its key (further
``#`` lines continue the text), or by one on a map above it. The README is README.intro.md followed by
one table row per documented key: key, type, default, description.

    python tools/chart_readme.py            # write the README
    python tools/chart_readme.py --check    # exit 1 when the README is stale or a value is undocumented
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "occupancy-mlops"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")


@dataclass
class Doc:
    path: tuple[str, ...]
    text: str


def documented(values_text: str) -> list[Doc]:
    """The ``# --`` comments of values.yaml with the key path each documents, in file order."""
    docs: list[Doc] = []
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in values_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped.removeprefix("# --").strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped.removeprefix("#").strip())
            continue
        match = KEY.match(line)
        if not match or stripped.startswith("-"):
            pending = None if not stripped else pending
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if pending is not None:
            docs.append(Doc(tuple(k for _, k in stack), " ".join(pending)))
        pending = None
    return docs


def lookup(values: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        values = values[key]
    return values


def leaves(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(value, dict) and value:
        return [leaf for key, sub in value.items() for leaf in leaves(sub, (*path, key))]
    return [path]


def undocumented(values: Any, docs: list[Doc]) -> list[str]:
    """Values with no ``# --`` comment on themselves or on a map above them."""
    covered = {d.path for d in docs}
    return [
        ".".join(leaf)
        for leaf in leaves(values)
        if not any(leaf[:n] in covered for n in range(1, len(leaf) + 1))
    ]


def type_of(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}.get(
        type(value), "string"
    )


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(values_text: str, intro: str) -> str:
    values = yaml.safe_load(values_text)
    docs = documented(values_text)
    paths = {d.path for d in docs}
    rows = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for doc in docs:
        value = lookup(values, doc.path)
        has_documented_children = any(p[: len(doc.path)] == doc.path and p != doc.path for p in paths)
        if isinstance(value, dict) and has_documented_children:
            default = "see below"
        else:
            default = f"`{json.dumps(value, separators=(', ', ': '))}`"
        rows.append(f"| `{'.'.join(doc.path)}` | {type_of(value)} | {cell(default)} | {cell(doc.text)} |")
    return (
        intro.rstrip("\n")
        + "\n\n## Values\n\n"
        + "Generated from `values.yaml` by `python tools/chart_readme.py` (`make chart-readme`); edit the\n"
        + "`# --` comments there, not this table. `values.schema.json` refuses any other key.\n\n"
        + "\n".join(rows)
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when README.md is stale")
    parser.add_argument("--chart", type=Path, default=CHART)
    args = parser.parse_args(argv)
    values_text = (args.chart / "values.yaml").read_text()
    missing = undocumented(yaml.safe_load(values_text), documented(values_text))
    if missing:
        print(f"error: values without a '# --' comment: {', '.join(missing)}", file=sys.stderr)
        return 1
    readme = render(values_text, (args.chart / "README.intro.md").read_text())
    target = args.chart / "README.md"
    if args.check:
        if not target.exists() or target.read_text() != readme:
            print(f"error: {target} is stale: run `make chart-readme`", file=sys.stderr)
            return 1
        return 0
    target.write_text(readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
