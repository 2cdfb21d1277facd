"""The chart README is generated from the values' `# --` comments and is up to date; every value is
documented."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.charts import chart
from tools import chart_readme


def test_readme_is_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    status = chart_readme.main(["--check"])
    assert status == 0, capsys.readouterr().err


def test_every_value_is_documented_and_listed() -> None:
    text = (chart.CHART / "values.yaml").read_text()
    values = chart.load_yaml(chart.CHART / "values.yaml")
    docs = chart_readme.documented(text)
    assert chart_readme.undocumented(values, docs) == []
    readme = (chart.CHART / "README.md").read_text()
    for doc in docs:
        assert f"| `{'.'.join(doc.path)}` |" in readme
    assert '| `scheduler.config.tags` | list | `["Production"]` |' in readme
    assert '| `clearml.existingSecret` | string | `""` | (required) Name of an existing Secret' in readme


def test_check_catches_a_stale_readme_and_an_undocumented_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "chart"
    copy.mkdir()
    for name in ("values.yaml", "README.intro.md", "README.md"):
        shutil.copy(chart.CHART / name, copy / name)
    values = copy / "values.yaml"
    values.write_text(
        values.read_text().replace("# -- Run the ClearML agent pools\n", "# -- Run the agent pools\n")
    )
    assert chart_readme.main(["--check", "--chart", str(copy)]) == 1
    assert "is stale" in capsys.readouterr().err
    values.write_text(values.read_text().replace("  # -- Run the agent pools\n", ""))
    assert chart_readme.main(["--check", "--chart", str(copy)]) == 1
    assert "values without a '# --' comment: agents.enabled" in capsys.readouterr().err
