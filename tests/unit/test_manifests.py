"""The Kubernetes manifests validate against the Kubernetes schemas and wire the topology:
two Deployments from one image, the API finding the runner through its Service, probes on
BentoML's endpoints, a GPU request for the runner, an autoscaler per serving Deployment; and the
monitoring: pods annotated for the scrape job, Prometheus and Grafana mounting the ConfigMaps
that deploy/k8s/kustomization.yaml generates from the files in deploy/monitoring/."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import kubernetes_validate
import pytest
import yaml

from model_artifact.settings import SOURCE_ROOT as REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
KUSTOMIZATION = "kustomization.yaml"
# kustomization.yaml is kustomize's input, not a Kubernetes object: it is rendered below
# (render()) and its output validated instead.
MANIFESTS = sorted(path for path in K8S.glob("*.yaml") if path.name != KUSTOMIZATION)
KUBERNETES_VERSION = "1.30.0"
SERVING = {"credit-risk-api", "credit-risk-runner"}
MONITORING_APPS = {"credit-risk-prometheus", "credit-risk-grafana"}
# A client-side `kubectl apply` stores the whole object in an annotation of at most 256 KiB.
MAX_APPLIED_BYTES = 262_144


def documents() -> list[dict]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization(folder: Path) -> dict:
    return yaml.safe_load((folder / KUSTOMIZATION).read_text())


def generated_configmaps(folder: Path) -> list[dict]:
    """kustomize's configMapGenerator over `files` (each file under its own name as the key),
    with the kustomization's labels; the name keeps no hash suffix here."""
    spec = kustomization(folder)
    labels = {k: v for entry in spec.get("labels", []) for k, v in entry["pairs"].items()}
    generated = []
    for generator in spec.get("configMapGenerator", []):
        assert set(generator) == {"name", "files"}, generator  # what this renderer handles
        data = {}
        for file in generator["files"]:
            path = (folder / file).resolve()
            assert path.is_relative_to(folder.resolve()), f"{file}: outside {folder}"
            data[PurePosixPath(file).name] = path.read_text()
        generated.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"], "labels": labels},
                "data": data,
            }
        )
    return generated


def render(folder: Path = K8S) -> list[dict]:
    """The objects `kubectl apply -k deploy/k8s/` creates, but for the generated names' hash."""
    objects: list[dict] = []
    for resource in kustomization(folder).get("resources", []):
        path = (folder / resource).resolve()
        if path.is_dir():
            objects += render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects + generated_configmaps(folder)


def by_kind(kind: str, objects: list[dict] | None = None) -> dict[str, dict]:
    return {
        d["metadata"]["name"]: d
        for d in (documents() if objects is None else objects)
        if d["kind"] == kind
    }


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_is_valid_kubernetes(path: Path):
    for document in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kustomization_applies_every_manifest_and_the_monitoring_files():
    resources = kustomization(K8S)["resources"]
    assert sorted(r for r in resources if r.endswith(".yaml")) == [p.name for p in MANIFESTS]
    assert "../monitoring" in resources


def test_generated_configmaps_are_valid_and_hold_the_monitoring_files():
    monitoring = REPO_ROOT / "deploy" / "monitoring"
    generated = {cm["metadata"]["name"]: cm for cm in generated_configmaps(monitoring)}
    for configmap in generated.values():
        kubernetes_validate.validate(configmap, KUBERNETES_VERSION, strict=True)
        assert len(json.dumps(configmap)) < MAX_APPLIED_BYTES, configmap["metadata"]["name"]
    expected = {
        "credit-risk-prometheus-config": ["prometheus.yml"],
        "credit-risk-prometheus-rules": ["alerts.yml"],
        "credit-risk-grafana-datasources": ["grafana/provisioning/datasources/prometheus.yaml"],
        "credit-risk-grafana-dashboard-providers": [
            "grafana/provisioning/dashboards/credit-risk.yaml"
        ],
        "credit-risk-grafana-dashboards": sorted(
            str(p.relative_to(monitoring)) for p in (monitoring / "grafana/dashboards").glob("*")
        ),
    }
    assert {name: sorted(cm["data"]) for name, cm in generated.items()} == {
        name: sorted(PurePosixPath(f).name for f in files) for name, files in expected.items()
    }
    for name, files in expected.items():
        for file in files:
            assert generated[name]["data"][PurePosixPath(file).name] == (
                (monitoring / file).read_text()
            )


def test_rendered_deployment_is_valid_kubernetes():
    objects = render()
    for document in objects:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    names = [(d["kind"], d["metadata"]["name"]) for d in objects]
    assert len(names) == len(set(names))


def test_kustomize_renders_the_same_objects():
    """kustomize itself (kubectl's), where installed: same objects, ConfigMaps from the files
    byte for byte, and every reference to a generated ConfigMap given its hashed name."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed; render() above covers the generator")
    output = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    rendered = [doc for doc in yaml.safe_load_all(output) if doc]
    ours = render()
    hashed = {}
    for document in rendered:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        name = document["metadata"]["name"]
        if document["kind"] == "ConfigMap" and name not in by_kind("ConfigMap", ours):
            hashed[name.rsplit("-", 1)[0]] = name
    assert sorted(
        (d["kind"], hashed.get(d["metadata"]["name"], d["metadata"]["name"])) for d in ours
    ) == sorted((d["kind"], d["metadata"]["name"]) for d in rendered)
    for original, name in hashed.items():
        assert (
            by_kind("ConfigMap", rendered)[name]["data"]
            == by_kind("ConfigMap", ours)[original]["data"]
        )
    for deployment in by_kind("Deployment", rendered).values():
        for volume in deployment["spec"]["template"]["spec"].get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] not in hashed, volume


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def serving_deployments() -> dict[str, dict]:
    return {n: d for n, d in by_kind("Deployment").items() if n in SERVING}


def test_two_deployments_from_one_image_with_probes_and_resources():
    deployments = by_kind("Deployment")
    assert set(deployments) == SERVING | MONITORING_APPS
    serving = serving_deployments()
    images = {container(d)["image"] for d in serving.values()}
    assert len(images) == 1
    for deployment in deployments.values():
        spec = container(deployment)
        assert spec["readinessProbe"]["httpGet"]["path"]
        assert spec["livenessProbe"]["httpGet"]["path"]
        assert spec["resources"]["requests"]["cpu"]
    for deployment in serving.values():
        spec = container(deployment)
        assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert spec["livenessProbe"]["httpGet"]["path"] == "/livez"
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


def test_every_serving_deployment_has_an_autoscaler():
    autoscalers = by_kind("HorizontalPodAutoscaler").values()
    assert {h["spec"]["scaleTargetRef"]["name"] for h in autoscalers} == SERVING


# --- monitoring wiring -----------------------------------------------------------------------


def prometheus_config() -> dict:
    return yaml.safe_load((REPO_ROOT / "deploy" / "monitoring" / "prometheus.yml").read_text())


def mounts(deployment: dict) -> dict[str, str]:
    """Mount path -> ConfigMap name, for the ConfigMap volumes of the only container."""
    volumes = {
        v["name"]: v["configMap"]["name"]
        for v in deployment["spec"]["template"]["spec"]["volumes"]
        if "configMap" in v
    }
    return {
        m["mountPath"]: volumes[m["name"]]
        for m in container(deployment)["volumeMounts"]
        if m["name"] in volumes
    }


def test_serving_pods_are_annotated_for_the_scrape_job():
    (job,) = prometheus_config()["scrape_configs"]
    keep = {
        r["source_labels"][0]: r["regex"]
        for r in job["relabel_configs"]
        if r.get("action") == "keep"
    }
    for deployment in serving_deployments().values():
        template = deployment["spec"]["template"]["metadata"]
        annotations = template["annotations"]
        assert (
            annotations["prometheus.io/scrape"]
            == keep["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
        )
        assert (
            template["labels"]["app.kubernetes.io/part-of"]
            == keep["__meta_kubernetes_pod_label_app_kubernetes_io_part_of"]
        )
        assert annotations["prometheus.io/path"] == "/metrics"
        (port,) = container(deployment)["ports"]
        assert annotations["prometheus.io/port"] == str(port["containerPort"])


def test_prometheus_mounts_its_configuration_and_the_rules():
    deployment = by_kind("Deployment")["credit-risk-prometheus"]
    mounted = mounts(deployment)
    generated = by_kind("ConfigMap", generated_configmaps(REPO_ROOT / "deploy" / "monitoring"))
    args = container(deployment)["args"]
    (config_file,) = [a.split("=", 1)[1] for a in args if a.startswith("--config.file=")]
    config_path = PurePosixPath(config_file)
    assert config_path.name in generated[mounted[str(config_path.parent)]]["data"]
    assert mounted[str(config_path.parent)] == "credit-risk-prometheus-config"
    (rule_glob,) = prometheus_config()["rule_files"]
    rules = generated[mounted[str(PurePosixPath(rule_glob).parent)]]
    assert rules["metadata"]["name"] == "credit-risk-prometheus-rules"
    assert all(PurePosixPath(key).match(PurePosixPath(rule_glob).name) for key in rules["data"])
    # pod discovery in its own namespace needs to list and watch pods there
    role = by_kind("Role")["credit-risk-prometheus"]
    assert {"get", "list", "watch"} <= set(role["rules"][0]["verbs"])
    binding = by_kind("RoleBinding")["credit-risk-prometheus"]
    assert (
        binding["subjects"][0]["name"]
        == deployment["spec"]["template"]["spec"]["serviceAccountName"]
    )


def test_grafana_mounts_the_provisioning_and_the_dashboard():
    deployment = by_kind("Deployment")["credit-risk-grafana"]
    mounted = mounts(deployment)
    assert mounted["/etc/grafana/provisioning/datasources"] == "credit-risk-grafana-datasources"
    assert mounted["/etc/grafana/provisioning/dashboards"] == (
        "credit-risk-grafana-dashboard-providers"
    )
    generated = by_kind("ConfigMap", generated_configmaps(REPO_ROOT / "deploy" / "monitoring"))
    (providers,) = generated["credit-risk-grafana-dashboard-providers"]["data"].values()
    (provider,) = yaml.safe_load(providers)["providers"]
    assert mounted[provider["options"]["path"]] == "credit-risk-grafana-dashboards"
    env = {e["name"]: e for e in container(deployment)["env"]}
    prometheus = by_kind("Service")["credit-risk-prometheus"]
    assert env["PROMETHEUS_URL"]["value"] == (
        f"http://{prometheus['metadata']['name']}:{prometheus['spec']['ports'][0]['port']}"
    )
    home = PurePosixPath(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]["value"])
    assert str(home.parent) == provider["options"]["path"]
    assert home.name in generated["credit-risk-grafana-dashboards"]["data"]
