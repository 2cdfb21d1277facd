"""The chart and the Dockerfiles under docker/ agree: image names, the user, the interpreter agents
run tasks in, and the commands the pods run exist in the image that runs them."""

from __future__ import annotations

import re

import pytest

from tests.charts import chart

DOCKER = chart.ROOT / "docker"
IMAGES = ("training", "services", "serving")


def dockerfile(image: str) -> str:
    path = DOCKER / f"{image}.Dockerfile"
    if not path.exists():
        pytest.fail(f"{path} is missing: the chart's default images are built from docker/")
    return path.read_text()


@pytest.mark.parametrize("image", IMAGES)
def test_names_and_user(image: str) -> None:
    text = dockerfile(image)
    assert f'org.opencontainers.image.title="occupancy-mlops-{image}"' in text
    values = chart.load_yaml(chart.CHART / "values.yaml")
    uid = values["securityContext"]["runAsUser"]
    assert re.search(rf"^USER {uid}:{values['securityContext']['runAsGroup']}$", text, re.M), "runAsUser"
    assert "HOME=/home/app" in text  # the chart mounts a writable emptyDir there


def test_agents_run_tasks_in_the_image_interpreter() -> None:
    text = dockerfile("training")
    python = chart.load_yaml(chart.CHART / "values.yaml")["agents"]["python"]
    assert f"CLEARML_AGENT_SKIP_PIP_VENV_INSTALL={python}" in text
    assert re.search(r"requirements\.py training", text)


def test_each_pod_runs_an_image_that_has_its_code() -> None:
    """Which image group each pod's command needs: agents the training group (clearml-agent), the
    services and the policy check the services group, serving and its setup the serving group."""
    needs = {"agent": "training", "scheduler": "services", "canary": "services", "autoscaler": "services"}
    needs |= {"serving": "serving", "test": "services"}
    for obj in chart.objects("minimal"):
        spec = chart.pod_spec(obj)
        if spec is None:
            continue
        component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        for container in chart.containers(spec):
            image = re.search(r"occupancy-mlops-(\w+)[:@]", container["image"])[1]
            if component == "policy":
                want = "serving" if container["name"] == "serving-setup" else "services"
            else:
                want = needs[component]
            assert image == want, f"{chart.name_of(obj)} {container['name']}: {image}"
            assert f"requirements.py {want}" in dockerfile(want)
