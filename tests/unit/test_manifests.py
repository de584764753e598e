"""The Kubernetes manifests validate against the Kubernetes schemas and wire the topology:
two Deployments from one image, the API finding the runner through its Service, probes on
BentoML's endpoints, a GPU request for the runner, an autoscaler per Deployment."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from model_artifact.settings import SOURCE_ROOT as REPO_ROOT

MANIFESTS = sorted((REPO_ROOT / "deploy" / "k8s").glob("*.yaml"))
KUBERNETES_VERSION = "1.30.0"


def documents() -> list[dict]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == kind}


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_is_valid_kubernetes(path: Path):
    for document in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def test_two_deployments_from_one_image_with_probes_and_resources():
    deployments = by_kind("Deployment")
    assert set(deployments) == {"credit-risk-api", "credit-risk-runner"}
    images = {container(d)["image"] for d in deployments.values()}
    assert len(images) == 1
    for deployment in deployments.values():
        spec = container(deployment)
        assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert spec["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert spec["resources"]["requests"]["cpu"]
    runner = container(deployments["credit-risk-runner"])
    assert runner["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "runner.service:ModelRunner" in runner["args"]
    assert "api.service:CreditRiskAPI" in container(deployments["credit-risk-api"])["args"]


def test_api_reaches_the_runner_through_its_service():
    url = by_kind("ConfigMap")["credit-risk-config"]["data"]["CREDIT_RISK_RUNNER_URL"]
    service = by_kind("Service")["credit-risk-runner"]
    assert url == f"http://credit-risk-runner:{service['spec']['ports'][0]['port']}"
    runner_labels = by_kind("Deployment")["credit-risk-runner"]["spec"]["template"]["metadata"][
        "labels"
    ]
    assert service["spec"]["selector"].items() <= runner_labels.items()


def test_every_deployment_has_an_autoscaler():
    autoscalers = by_kind("HorizontalPodAutoscaler").values()
    assert {h["spec"]["scaleTargetRef"]["name"] for h in autoscalers} == set(by_kind("Deployment"))
