"""The Kubernetes manifests validate against the Kubernetes schemas and wire the topology:
two Deployments from one image, the API finding the runner through its Service, probes on
BentoML's endpoints, a GPU request for the runner, an autoscaler per serving Deployment; and the
monitoring: pods annotated for the scrape job, Prometheus and Grafana mounting the ConfigMaps
that deploy/k8s/kustomization.yaml generates from the files in deploy/monitoring/; and who is
where: every container non-root on a read-only root with nothing to escalate to, the runner
reachable only from the API (and the scrape), credentials in Secrets and never in a ConfigMap."""

from __future__ import annotations

import json
import re
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


# --- who runs as whom, who reaches whom, where the credentials are ----------------------------

# The numeric user of each image: BentoML's generated Dockerfile (`bentoml`, read from the
# installed bentoml below), Prometheus' `nobody`, Grafana's `grafana`.
IMAGE_UIDS = {"credit-risk-prometheus": 65534, "credit-risk-grafana": 472}
# what BentoML creates under BENTOML_HOME at start-up (bentoml_home(): bentos, envs, tmp; the
# metrics' multiprocess folder); the Bento's own files (src, models) stay read-only
BENTOML_WRITES = ("bentos", "envs", "tmp", "prometheus_multiproc_dir")
BENTOML_READS = ("src", "models")
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PREDICTION_LOG_URL", re.I)
CREDENTIAL_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]+:[^\s@'\"]+@", re.I)
LOG_SECRET = "credit-risk-prediction-log"


def bentoml_uid() -> int:
    from bentoml._internal.container.generate import BENTO_UID_GID

    return int(BENTO_UID_GID)


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def all_containers(deployment: dict) -> list[dict]:
    spec = pod_spec(deployment)
    return spec.get("initContainers", []) + spec["containers"]


def effective(deployment: dict, spec: dict, field: str):
    """A security setting as the kubelet applies it: the container's, else the pod's."""
    container_level = spec.get("securityContext", {})
    if field in container_level:
        return container_level[field]
    return pod_spec(deployment).get("securityContext", {}).get(field)


def writable_mounts(spec: dict) -> set[str]:
    return {m["mountPath"] for m in spec.get("volumeMounts", []) if not m.get("readOnly")}


def test_every_container_runs_unprivileged_on_a_read_only_root():
    """Pod Security Standards `restricted`, and then some: non-root with a numeric user and
    group, the runtime's seccomp profile, no privilege escalation, every capability dropped,
    a read-only root filesystem; no host namespaces or ports; no API token where none is
    needed."""
    uids = IMAGE_UIDS | {name: bentoml_uid() for name in SERVING}
    deployments = by_kind("Deployment")
    assert set(deployments) == set(uids)
    for name, deployment in deployments.items():
        pod = pod_spec(deployment)
        context = pod["securityContext"]
        assert context["runAsUser"] == context["runAsGroup"] == context["fsGroup"] == uids[name]
        assert not {"hostNetwork", "hostPID", "hostIPC"} & {k for k, v in pod.items() if v}
        if name != "credit-risk-prometheus":  # the only one that reads the Kubernetes API
            assert pod["automountServiceAccountToken"] is False, name
        for spec in all_containers(deployment):
            where = f"{name}/{spec['name']}"
            assert effective(deployment, spec, "runAsNonRoot") is True, where
            assert effective(deployment, spec, "runAsUser") == uids[name], where
            assert effective(deployment, spec, "seccompProfile") == {"type": "RuntimeDefault"}
            own = spec["securityContext"]
            assert own["allowPrivilegeEscalation"] is False, where
            assert own["readOnlyRootFilesystem"] is True, where
            assert own["capabilities"] == {"drop": ["ALL"]}, where
            assert not own.get("privileged"), where
            assert all("hostPort" not in port for port in spec.get("ports", [])), where


def test_read_only_containers_can_write_where_their_processes_write():
    deployments = by_kind("Deployment")
    volumes = {
        name: {v["name"]: v for v in pod_spec(d)["volumes"]} for name, d in deployments.items()
    }
    for name, deployment in deployments.items():
        spec = container(deployment)
        for mount in spec["volumeMounts"]:  # writable: scratch or storage, never configuration
            if not mount.get("readOnly"):
                volume = volumes[name][mount["name"]]
                assert {"emptyDir", "persistentVolumeClaim"} & set(volume), (name, mount)
        writable = writable_mounts(spec)
        assert "/tmp" in writable or name == "credit-risk-prometheus", name
        if name in SERVING:
            env = {e["name"]: e.get("value") for e in spec["env"]}
            home = PurePosixPath(env["BENTOML_HOME"])
            assert {str(home / d) for d in BENTOML_WRITES} <= writable, name
            assert not {str(home), *(str(home / d) for d in BENTOML_READS)} & writable, name
            assert env["BENTOML_DO_NOT_TRACK"] == "true"  # else it writes a client_id file
    prometheus = container(deployments["credit-risk-prometheus"])
    (tsdb,) = [
        a.split("=", 1)[1] for a in prometheus["args"] if a.startswith("--storage.tsdb.path=")
    ]
    assert tsdb in writable_mounts(prometheus)
    grafana = container(deployments["credit-risk-grafana"])
    assert "/var/lib/grafana" in writable_mounts(grafana)
    assert {"name": "GF_LOG_MODE", "value": "console"} in grafana["env"]  # no /var/log file
    # a SQLite prediction log (a trial) has its folder writable on the API pod
    assert "/var/lib/credit-risk" in writable_mounts(container(deployments["credit-risk-api"]))


# --- network policies ------------------------------------------------------------------------

OUTSIDE = "outside"  # a client with no credit-risk label: another pod, a node, the internet


def pod_labels(name: str) -> dict[str, str]:
    if name == OUTSIDE:
        return {}
    labels: dict[str, str] = by_kind("Deployment")[name]["spec"]["template"]["metadata"]["labels"]
    return labels


def matches(selector: dict, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # what this evaluator understands
    return selector.get("matchLabels", {}).items() <= labels.items()


def peer_admits(peer: dict, source: str) -> bool:
    """A `from` entry: a podSelector alone selects pods of the policy's own namespace."""
    assert set(peer) == {"podSelector"}, peer  # no namespaceSelector or ipBlock is used
    return source != OUTSIDE and matches(peer["podSelector"], pod_labels(source))


def port_admits(entry: dict, target: str, port: int) -> bool:
    assert entry.get("protocol", "TCP") == "TCP"
    if isinstance(entry["port"], int):
        return bool(entry["port"] == port)
    named = {
        p["name"]: p["containerPort"] for p in container(by_kind("Deployment")[target])["ports"]
    }
    return named.get(entry["port"]) == port


def admitted(source: str, target: str, port: int) -> bool:
    """Whether the NetworkPolicies let ``source`` open a TCP connection to ``target``'s pods on
    ``port`` (Kubernetes semantics: a pod selected by no Ingress policy admits everything; a
    selected one admits what any rule of any selecting policy admits)."""
    labels = pod_labels(target)
    selecting = [
        policy["spec"]
        for policy in by_kind("NetworkPolicy").values()
        if matches(policy["spec"]["podSelector"], labels)
        and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
    ]
    if not selecting:
        return True
    return any(
        (not rule.get("from") or any(peer_admits(p, source) for p in rule["from"]))
        and (not rule.get("ports") or any(port_admits(e, target, port) for e in rule["ports"]))
        for policy in selecting
        for rule in policy.get("ingress", [])
    )


def service_port(deployment: str) -> int:
    (port,) = container(by_kind("Deployment")[deployment])["ports"]
    return int(port["containerPort"])


def test_the_runner_answers_only_the_api_and_the_scrape():
    runner, api = "credit-risk-runner", "credit-risk-api"
    prometheus, grafana = "credit-risk-prometheus", "credit-risk-grafana"
    port = service_port(runner)
    assert admitted(api, runner, port)
    assert admitted(prometheus, runner, port)  # the scrape of /metrics
    assert not admitted(OUTSIDE, runner, port)
    assert not admitted(grafana, runner, port)
    assert not admitted(api, runner, 8080)  # nothing but the serving port, even for the API
    # the runner's Service never leaves the cluster, and no other object points at the runner
    assert by_kind("Service")[runner]["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert not by_kind("Ingress")


def test_every_other_needed_flow_is_admitted_and_nothing_else():
    api, prometheus, grafana = "credit-risk-api", "credit-risk-prometheus", "credit-risk-grafana"
    assert admitted(OUTSIDE, api, service_port(api))  # the public service
    assert admitted(prometheus, api, service_port(api))
    assert not admitted(OUTSIDE, api, 8080)
    assert admitted(grafana, prometheus, service_port(prometheus))  # the data source
    assert not admitted(OUTSIDE, prometheus, service_port(prometheus))
    assert not admitted(api, prometheus, service_port(prometheus))
    assert admitted(OUTSIDE, grafana, service_port(grafana))  # a UI behind its own login
    # Prometheus scrapes what its job selects; every such pod admits it on the annotated port
    for name, deployment in by_kind("Deployment").items():
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            assert admitted(prometheus, name, int(annotations["prometheus.io/port"])), name


def test_every_credit_risk_pod_is_covered_by_the_default_deny():
    """Each pod refuses what no policy admits: a new pod of the app starts closed."""
    deny = by_kind("NetworkPolicy")["credit-risk-default-deny-ingress"]["spec"]
    assert deny["policyTypes"] == ["Ingress"]
    assert not deny.get("ingress")
    for name in by_kind("Deployment"):
        assert matches(deny["podSelector"], pod_labels(name)), name


# --- credentials -----------------------------------------------------------------------------


def test_no_configmap_holds_a_credential():
    """A ConfigMap is readable by whoever may read the namespace's settings, and lands in
    `kubectl describe` output: no password, token or credential URL in one, generated ones
    included; the prediction log's URL is not in one at all."""
    configmaps = list(by_kind("ConfigMap", render()).values())
    assert len(configmaps) > 1
    for configmap in configmaps:
        for key, value in configmap.get("data", {}).items():
            where = f"{configmap['metadata']['name']}/{key}"
            assert not SECRET_NAME.search(key), where
            assert not CREDENTIAL_URL.search(value), where


def test_credentials_come_from_secrets_and_only_where_needed():
    deployments = by_kind("Deployment")
    for name, deployment in deployments.items():
        for spec in all_containers(deployment):
            for variable in spec.get("env", []):
                if SECRET_NAME.search(variable["name"]):
                    assert "value" not in variable, (name, variable)
                    assert "secretKeyRef" in variable["valueFrom"], (name, variable)
                assert not CREDENTIAL_URL.search(str(variable.get("value", ""))), (name, variable)
    api_env = {e["name"]: e for e in container(deployments["credit-risk-api"])["env"]}
    assert api_env["CREDIT_RISK_PREDICTION_LOG_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": LOG_SECRET, "key": "url"}
    }
    # the runner writes no log: it gets no database credentials at all
    runner_env = container(deployments["credit-risk-runner"]).get("env", [])
    assert not any(SECRET_NAME.search(e["name"]) for e in runner_env)
    assert not any("secretKeyRef" in str(e) or "secretRef" in str(e) for e in runner_env)


def test_every_secret_referenced_is_documented_where_the_deployment_is_applied():
    """The Secrets are created by hand: the kustomization says how, for each one referenced."""
    referenced = {
        variable["valueFrom"]["secretKeyRef"]["name"]
        for deployment in by_kind("Deployment").values()
        for spec in all_containers(deployment)
        for variable in spec.get("env", [])
        if "secretKeyRef" in variable.get("valueFrom", {})
    }
    assert LOG_SECRET in referenced
    documented = (K8S / KUSTOMIZATION).read_text()
    for name in referenced:
        assert f"kubectl create secret generic {name} " in documented, name
