"""The Kubernetes profiles played as pods: each overlay, as `kubectl kustomize` renders it, run
with `podman kube play` on the test's CPU image, the way a cluster would run its serving pods.

What podman can run is played as the manifests say it: the API's (and, where the profile has
one, the runner's) Deployment with its security context, emptyDirs, environment, ConfigMap and
Secret. What has no local equivalent is not played and is listed here exactly, so a new object
cannot slip by unnoticed (the autoscalers, the NetworkPolicies, Prometheus and Grafana with
their RBAC and generated ConfigMaps: tests/unit/test_manifests.py keeps validating all of them
against the Kubernetes schemas). The two Services become what podman has: the runner's a
network alias of its pod (so the API reaches it by the name the manifests use,
http://credit-risk-runner:3000), the API's a port published on loopback. Only what must be
local is rewritten: image names (the test's image), replicas (1), and in the GPU profile the
runner's device (cpu) and its `nvidia.com/gpu` resources (there is no GPU here).

Then, per profile: the probe paths taken from the rendered Deployment answer 200, POST /score
answers 200; where the profile has a runner (the GPU profile always; the CPU profile when its
sizing recommends one) /model says the runner is remote, and with the runner pod stopped the API
answers 503 + Retry-After at once and its readiness probe fails (so a Service routes it no
traffic), and it recovers by itself once the runner pod is started again. Run with ``-s`` for
the figures (start-up to ready per pod, 503 latency, recovery).
"""

from __future__ import annotations

import ast
import base64
import copy
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml
from tests_support import has_runner

from loadtests.load.server import free_port
from model_artifact.settings import SOURCE_ROOT

K8S = SOURCE_ROOT / "deploy" / "k8s"
EXAMPLE = SOURCE_ROOT / "loadtests" / "example_request.json"
PROFILES = ("cpu", "gpu")
API, RUNNER = "credit-risk-api", "credit-risk-runner"
CONFIG, SECRET = "credit-risk-config", "credit-risk-prediction-log"
GPU = "nvidia.com/gpu"
# The per-pod trial log the Secret's comment in deploy/k8s/base/api.yaml names (an emptyDir).
PREDICTION_LOG_URL = "sqlite:////var/lib/credit-risk/predictions.db"

# What has no local equivalent, by kind and name (a generated ConfigMap without its hash).
NOT_PLAYED_IN_BOTH = {
    ("HorizontalPodAutoscaler", API),  # no metrics server, no scaling: one pod
    ("NetworkPolicy", "credit-risk-default-deny-ingress"),  # podman enforces no policy
    ("NetworkPolicy", API),
    ("NetworkPolicy", "credit-risk-prometheus"),
    ("NetworkPolicy", "credit-risk-grafana"),
    # monitoring: public images (none local, no registry here) and the Kubernetes API
    ("Deployment", "credit-risk-prometheus"),
    ("Service", "credit-risk-prometheus"),
    ("ServiceAccount", "credit-risk-prometheus"),
    ("Role", "credit-risk-prometheus"),
    ("RoleBinding", "credit-risk-prometheus"),
    ("ConfigMap", "credit-risk-prometheus-config"),
    ("ConfigMap", "credit-risk-prometheus-rules"),
    ("Deployment", "credit-risk-grafana"),
    ("Service", "credit-risk-grafana"),
    ("ConfigMap", "credit-risk-grafana-datasources"),
    ("ConfigMap", "credit-risk-grafana-dashboard-providers"),
    ("ConfigMap", "credit-risk-grafana-dashboards"),
}
RUNNER_NOT_PLAYED = {("HorizontalPodAutoscaler", RUNNER), ("NetworkPolicy", RUNNER)}
NOT_PLAYED = {
    "cpu": NOT_PLAYED_IN_BOTH | (RUNNER_NOT_PLAYED if has_runner("cpu") else set()),
    "gpu": NOT_PLAYED_IN_BOTH | RUNNER_NOT_PLAYED,
}
# Bounds: a pod's start-up to ready on a small shared machine; the API's answer once its
# runner is gone (item 2: fail fast), how soon it stops being ready, and how soon it is ready
# again once its runner is (the breaker's probe; no restart of the API).
READY_BOUND_S = 240
SHED_BOUND_S = 2.0
UNREADY_BOUND_S = 5.0
RECOVERY_BOUND_S = 10.0


def podman(*args: str, timeout: float = 120, check: bool = True):
    from containers import podman as engine

    return engine(*args, timeout=timeout, check=check)


def kubectl() -> str:
    return str(Path(sys.executable).parent / "kubectl")


def rendered(profile: str) -> list[dict]:
    """`kubectl kustomize deploy/k8s/overlays/<profile>`: what `kubectl apply -k` creates."""
    output = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "overlays" / profile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(output.stdout) if doc]


def plain_name(document: dict) -> str:
    """The object's name, without the content hash kustomize appends to a generated one."""
    name: str = document["metadata"]["name"]
    if document["kind"] == "ConfigMap" and name != CONFIG:
        return re.sub(r"-[0-9a-z]{10}$", "", name)
    return name


@dataclass
class LocalPlay:
    """A rendered profile as podman can run it."""

    profile: str
    deployments: dict[str, dict]  # rewritten, in start order (the runner first)
    configmap: dict
    rendered: dict[str, dict]  # the serving Deployments as rendered
    aliases: dict[str, str]  # deployment -> the Service name its pod answers to
    not_played: set[tuple[str, str]]
    volumes: set[str] = field(default_factory=set)  # the named volumes the pods get
    rewrites: list[str] = field(default_factory=list)

    def container(self, name: str) -> dict:
        (container,) = self.rendered[name]["spec"]["template"]["spec"]["containers"]
        return container

    def probe_paths(self, name: str) -> dict[str, str]:
        """The kubelet's probes of the rendered Deployment: kind -> path."""
        return {
            probe: self.container(name)[probe]["httpGet"]["path"]
            for probe in ("readinessProbe", "livenessProbe")
        }


def local_play(objects: list[dict], profile: str, image: str, api_port: int) -> LocalPlay:
    """Keep what `podman kube play` runs, rewrite only what must be local, list the rest."""
    deployments: dict[str, dict] = {}
    configmap: dict | None = None
    services: dict[str, dict] = {}
    not_played: set[tuple[str, str]] = set()
    for document in objects:
        kind, name = document["kind"], plain_name(document)
        if kind == "Deployment" and name in (API, RUNNER):
            deployments[name] = document
        elif kind == "ConfigMap" and name == CONFIG:
            configmap = document
        elif kind == "Service" and name in (API, RUNNER):
            services[name] = document
        else:
            not_played.add((kind, name))
    assert configmap is not None
    assert set(services) == set(deployments), "a Service per serving Deployment"

    play = LocalPlay(profile, {}, configmap, deployments, {}, not_played)
    for name in sorted(deployments, key=lambda n: n != RUNNER):  # the runner first
        deployment = copy.deepcopy(deployments[name])
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        if spec.get("replicas", 1) != 1:
            play.rewrites.append(f"{name}: replicas {spec['replicas']} -> 1")
            spec["replicas"] = 1
        play.rewrites.append(f"{name}: image {container['image']} -> {image}")
        container["image"] = image
        for variable in container.get("env", []):
            if variable["name"] == "CREDIT_RISK_RUNNER_DEVICE" and variable["value"] != "cpu":
                play.rewrites.append(
                    f"{name}: CREDIT_RISK_RUNNER_DEVICE {variable['value']} -> cpu"
                )
                variable["value"] = "cpu"
        for bound in ("requests", "limits"):
            if GPU in container.get("resources", {}).get(bound, {}):
                del container["resources"][bound][GPU]
                play.rewrites.append(f"{name}: resources.{bound}[{GPU}] dropped")
        # podman 4.3 turns a livenessProbe into a healthcheck `curl -f http://localhost:0/livez`
        # (a named port becomes 0, and the image has no curl) that restarts the container once
        # it fails, where systemd runs healthchecks; the test GETs the path as the kubelet does
        del container["livenessProbe"]
        play.rewrites.append(f"{name}: livenessProbe not played (the test GETs /livez)")
        play.volumes |= own_empty_dirs(name, pod, container, play.rewrites)

        service = services[name]
        (port,) = service["spec"]["ports"]
        assert service["spec"]["selector"].items() <= pod_labels(deployment).items()
        if name == API:  # the public Service: published on loopback
            (http,) = [p for p in container["ports"] if p["name"] == port["targetPort"]]
            http.update(hostPort=api_port, hostIP="127.0.0.1")
            play.rewrites.append(f"Service {name} (port {port['port']}) -> 127.0.0.1:{api_port}")
        else:  # reached inside the cluster by its name: a network alias of its pod
            assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
            assert port["port"] == port_number(container, port["targetPort"])
            play.aliases[name] = service["metadata"]["name"]
            play.rewrites.append(f"Service {name} -> network alias {name} of its pod")
        play.deployments[name] = deployment
    return play


def own_empty_dirs(name: str, pod: dict, container: dict, rewrites: list[str]) -> set[str]:
    """podman 4.3 makes an emptyDir a named volume called as the volume (`tmp`), shared by every
    pod that names one so and left behind, and ignores subPath (every mount of a volume shows
    all of it). A pod's own emptyDir, per subPath, is a volume named for the pod and the path."""
    empty = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    volumes = [v for v in pod.get("volumes", []) if v["name"] not in empty]
    local: set[str] = set()
    for mount in container.get("volumeMounts", []):
        if mount["name"] not in empty:
            continue
        volume = "-".join([name, mount["name"], *filter(None, [mount.pop("subPath", None)])])
        mount["name"] = re.sub(r"[^a-z0-9-]", "-", volume.lower())
        local.add(mount["name"])
    pod["volumes"] = volumes + [{"name": v, "emptyDir": {}} for v in sorted(local)]
    rewrites.append(f"{name}: emptyDirs {sorted(empty)} -> volumes of its own, one per subPath")
    return local


def pod_labels(deployment: dict) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def port_number(container: dict, name_or_number: str | int) -> int:
    if isinstance(name_or_number, int):
        return name_or_number
    (port,) = [p for p in container["ports"] if p["name"] == name_or_number]
    return int(port["containerPort"])


def secret_payload(values: dict[str, str]) -> str:
    """What podman 4.3's kube play reads for a `secretKeyRef`: a podman secret holding the
    Kubernetes Secret's `data` as JSON (key -> base64). A `kind: Secret` in the played YAML
    is stored as YAML there, and then refused ("not valid JSON")."""
    return json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in values.items()})


def wait_until(
    condition: Callable[[], bool], timeout_s: float, step_s: float = 0.1
) -> float | None:
    """Seconds until ``condition`` held, or None."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if condition():
            return time.monotonic() - start
        time.sleep(step_s)
    return None


def status(url: str, timeout_s: float = 1) -> int | None:
    """GET ``url`` as a kubelet probe does (timeoutSeconds 1 by default): the status, or None
    when nothing answered in time (a failure)."""
    try:
        return requests.get(url, timeout=timeout_s).status_code
    except requests.RequestException:
        return None


@dataclass
class Answer:
    status: int | str
    retry_after: str | None
    took_s: float


def score(url: str, body: bytes) -> Answer:
    start = time.monotonic()
    try:
        response = requests.post(
            f"{url}/score", data=body, headers={"content-type": "application/json"}, timeout=10
        )
    except requests.RequestException as error:
        return Answer(type(error).__name__, None, time.monotonic() - start)
    return Answer(
        response.status_code, response.headers.get("retry-after"), time.monotonic() - start
    )


class PlayedProfile:
    """The profile's pods on a network of their own (the namespace); the API on loopback."""

    def __init__(self, play: LocalPlay, folder: Path, api_port: int) -> None:
        self.play = play
        self.folder = folder
        self.url = f"http://127.0.0.1:{api_port}"
        self.network = f"credit-risk-{play.profile}-{os.getpid()}"
        self.pods: dict[str, str] = {}  # deployment -> pod name
        self.ready_s: dict[str, float] = {}

    def start(self, name: str) -> None:
        """`podman kube play` of one Deployment with the ConfigMap; the pod ready (its
        readiness probe's path answers 200), in ``self.ready_s``."""
        path = self.folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all([self.play.configmap, self.play.deployments[name]]))
        network = self.network
        if name in self.play.aliases:
            network += f":alias={self.play.aliases[name]}"
        started = time.monotonic()
        podman("kube", "play", "--network", network, str(path), timeout=300)
        self.pods[name] = f"{name}-pod-0"  # podman 4.3 names a Deployment's pod so
        readiness = self.play.probe_paths(name)["readinessProbe"]
        ready = wait_until(lambda: status(self.pod_url(name, readiness)) == 200, READY_BOUND_S, 1)
        assert ready is not None, f"{name} not ready in {READY_BOUND_S} s:\n{self.logs()}"
        self.ready_s[name] = time.monotonic() - started

    def play_all(self) -> None:
        self.remove_leftovers()
        payload = self.folder / "secret.json"
        payload.write_text(secret_payload({"url": PREDICTION_LOG_URL}))
        podman("secret", "create", SECRET, str(payload))
        podman("network", "create", self.network)
        for name in self.play.deployments:
            self.start(name)

    def pod_url(self, name: str, path: str) -> str:
        """The API through its published port; another pod at its IP, as the kubelet probes it."""
        if name == API:
            return f"{self.url}{path}"
        infra = podman("pod", "inspect", self.pods[name], "--format", "{{.InfraContainerID}}")
        networks = json.loads(
            podman(
                "inspect", infra.stdout.strip(), "--format", "{{json .NetworkSettings.Networks}}"
            ).stdout
        )
        port = port_number(self.play.container(name), "http")
        return f"http://{networks[self.network]['IPAddress']}:{port}{path}"

    def container(self, name: str) -> str:
        return f"{self.pods[name]}-{self.play.container(name)['name']}"

    def logs(self) -> str:
        parts = []
        for name in self.pods:
            logged = podman("logs", "--tail", "40", self.container(name), check=False)
            parts.append(f"--- {self.container(name)}\n{logged.stdout}{logged.stderr}")
        return "\n".join(parts)

    def remove_leftovers(self) -> None:
        """What a run cut short may have left (pods, their volumes, the Secret)."""
        for name in self.play.deployments:
            podman("pod", "rm", "-f", "-t", "0", f"{name}-pod-0", check=False, timeout=120)
        if self.play.volumes:
            podman("volume", "rm", "-f", *sorted(self.play.volumes), check=False)
        podman("secret", "rm", SECRET, check=False)

    def remove(self) -> None:
        for pod in self.pods.values():
            podman("pod", "rm", "-f", "-t", "5", pod, check=False, timeout=120)
        self.remove_leftovers()
        podman("network", "rm", "-f", self.network, check=False)


@pytest.fixture(params=PROFILES)
def profile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_what_has_no_local_equivalent_is_exactly_what_is_not_played(profile):
    """Any new object in a profile fails here until it is played or listed in NOT_PLAYED."""
    play = local_play(rendered(profile), profile, "localhost/credit-risk-test:x", 3000)
    assert play.not_played == NOT_PLAYED[profile]
    assert set(play.deployments) == ({API, RUNNER} if has_runner(profile) else {API})
    assert set(play.aliases.values()) == ({RUNNER} if has_runner(profile) else set())
    for name, deployment in play.deployments.items():
        # (nodeSelector and tolerations stay: podman ignores them, as a node without a GPU would)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "localhost/credit-risk-test:x"
        assert GPU not in json.dumps(container["resources"]), name
        assert "cuda" not in json.dumps(container["env"]), name


def test_what_is_not_played_is_still_validated_against_the_kubernetes_schemas():
    """tests/unit/test_manifests.py validates every rendered object of both profiles (the
    autoscalers and NetworkPolicies included) with kubernetes_validate, filtering no kind."""
    source = (SOURCE_ROOT / "tests" / "unit" / "test_manifests.py").read_text()
    module = ast.parse(source)
    (profiles,) = [
        node.value
        for node in module.body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "PROFILES"
    ]
    assert set(ast.literal_eval(profiles)) == set(PROFILES)
    validating = [
        node
        for node in module.body
        if isinstance(node, ast.FunctionDef)
        and node.name.startswith("test_")
        and "kubernetes_validate.validate(" in ast.unparse(node)
    ]
    assert validating, "no test validates the rendered objects against the schemas"
    (test,) = validating
    assert [a.arg for a in test.args.args] == ["profile"]  # the fixture over PROFILES
    (loop,) = [n for n in ast.walk(test) if isinstance(n, ast.For)][:1]
    iterated = ast.unparse(loop.iter)
    assert iterated == "rendered(profile)" or f"{iterated} = rendered(profile)" in ast.unparse(test)
    assert "kind" not in ast.unparse(loop), "the validation must not skip a kind"
    assert not test.decorator_list, "the validation must not be skipped or marked"


def test_the_profile_plays_as_pods(profile, cpu_image, tmp_path):
    api_port = free_port()
    play = local_play(rendered(profile), profile, cpu_image, api_port)
    played = PlayedProfile(play, tmp_path, api_port)
    body = EXAMPLE.read_bytes()
    try:
        played.play_all()
        figures = [f"{profile}: ready {name} {s:.1f} s" for name, s in played.ready_s.items()]
        for name in play.deployments:
            # the probes of the rendered Deployment answer as the image serves them
            for probe, path in play.probe_paths(name).items():
                assert status(played.pod_url(name, path), timeout_s=3) == 200, (name, probe, path)
            # what podman 4.3 applies of the security context, and the image's own user
            inspected = json.loads(podman("inspect", played.container(name)).stdout)[0]
            assert inspected["HostConfig"]["ReadonlyRootfs"] is True, name
            uid = podman("exec", played.container(name), "id", "-u").stdout.strip()
            pod_spec = play.rendered[name]["spec"]["template"]["spec"]
            assert int(uid) == pod_spec["securityContext"]["runAsUser"], name

        answered = score(played.url, body)
        assert answered.status == 200, answered
        model = requests.get(f"{played.url}/model", timeout=10).json()
        assert model["runner_mode"] == play.configmap["data"]["CREDIT_RISK_RUNNER_MODE"]
        assert model["runner_mode"] == ("remote" if has_runner(profile) else "inprocess")
        if RUNNER in play.deployments:
            figures += runner_outage(played, body)
        print("\n" + "\n  ".join([f"{profile} rewrites:", *play.rewrites]))
        print("  " + "\n  ".join(figures))
    finally:
        played.remove()


def runner_outage(played: PlayedProfile, body: bytes) -> list[str]:
    """Item 2 with pods: the runner's pod stopped, then started again."""
    runner_pod = played.pods[RUNNER]
    readiness = played.url + played.play.probe_paths(API)["readinessProbe"]
    liveness = played.url + played.play.probe_paths(API)["livenessProbe"]
    stopping = time.monotonic()
    podman("pod", "stop", runner_pod, timeout=120)
    stopped_s = time.monotonic() - stopping
    shed = [score(played.url, body) for _ in range(10)]
    unready_s = wait_until(lambda: status(readiness) != 200, UNREADY_BOUND_S)
    alive = status(liveness)
    late = score(played.url, body)
    assert all(a.status == 503 and a.retry_after is not None for a in [*shed, late]), shed
    assert max(a.took_s for a in [*shed, late]) < SHED_BOUND_S, shed
    assert unready_s is not None, "the API stayed ready with its runner stopped"
    assert status(readiness) != 200

    starting = time.monotonic()
    podman("pod", "start", runner_pod, timeout=120)
    runner_path = played.play.probe_paths(RUNNER)["readinessProbe"]
    runner_back_s = wait_until(
        lambda: status(played.pod_url(RUNNER, runner_path)) == 200, READY_BOUND_S, 0.5
    )
    assert runner_back_s is not None, f"the runner pod did not come back:\n{played.logs()}"
    api_back_s = wait_until(lambda: status(readiness) == 200, RECOVERY_BOUND_S, 0.25)
    assert api_back_s is not None, f"the API did not recover by itself:\n{played.logs()}"
    # each API worker closes its own breaker at its next probe (every 0.25 s): the readiness
    # probe may reach one that has while a request reaches one that has not yet
    scoring_s = wait_until(lambda: score(played.url, body).status == 200, 5.0, 0.1)
    assert scoring_s is not None, "scoring did not resume after the API was ready"
    recovered_s = time.monotonic() - starting
    return [
        f"runner pod stopped ({stopped_s:.1f} s): /score 503 + Retry-After "
        f"{', '.join(f'{a.took_s * 1000:.0f}' for a in shed)} ms; API not ready after "
        f"{unready_s:.2f} s; its liveness probe {alive}",
        f"runner pod started: runner ready after {runner_back_s:.1f} s, the API ready "
        f"{api_back_s:.2f} s later and scoring ({recovered_s:.1f} s after `podman pod start`)",
    ]
