"""The Kubernetes profiles played as pods: each overlay, as `kubectl kustomize` renders it, run
with `podman kube play` on the test's CPU image, the way a cluster would run its serving pods.

What podman can run is played as the manifests say it: the API's (and, in the GPU profile, the
runner's) Deployment with its security context, emptyDirs, environment, ConfigMap and Secret.
What has no local equivalent is not played and is listed here exactly, so a new object cannot
slip by unnoticed (the autoscalers, the NetworkPolicies, Prometheus and Grafana with their RBAC
and generated ConfigMaps: tests/unit/test_manifests.py keeps validating all of them against the
Kubernetes schemas). The two Services become what podman has: the runner's a network alias of
its pod (so the API reaches it by the name the manifests use, http://credit-risk-runner:3000),
the API's a port published on loopback. Only what must be local is rewritten: image names (the
test's image), replicas (1), and in the GPU profile the runner's device (cpu) and its
`nvidia.com/gpu` resources (there is no GPU here).

Then, per profile: the probe paths taken from the rendered Deployment answer 200, POST /score
answers 200; in the GPU profile /model says the runner is remote, and with the runner pod
stopped the API answers 503 + Retry-After at once and its readiness probe fails (so a Service
routes it no traffic), and it recovers by itself once the runner pod is started again. Run with
``-s`` for the figures (start-up to ready per pod, 503 latency, recovery).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml

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
NOT_PLAYED = {
    "cpu": NOT_PLAYED_IN_BOTH,
    "gpu": NOT_PLAYED_IN_BOTH
    | {("HorizontalPodAutoscaler", RUNNER), ("NetworkPolicy", RUNNER)},
}
# Bounds: a pod's start-up to ready on a small shared machine; the API's answer once its
# runner is gone (item 2: fail fast), how soon it stops being ready, and its recovery.
READY_BOUND_S = 240
SHED_BOUND_S = 2.0
UNREADY_BOUND_S = 5.0
RECOVERY_BOUND_S = 90.0


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
    probes: dict[str, dict[str, str]]  # deployment -> probe kind -> path, as rendered
    aliases: dict[str, str]  # deployment -> the Service name its pod answers to
    not_played: set[tuple[str, str]]
    rewrites: list[str] = field(default_factory=list)


def local_play(objects: list[dict], profile: str, image: str, api_port: int) -> LocalPlay:
    """Keep what `podman kube play` runs, rewrite only what must be local, list the rest."""
    deployments: dict[str, dict] = {}
    configmap: dict | None = None
    services: dict[str, dict] = {}
    not_played: set[tuple[str, str]] = set()
    for document in objects:
        kind, name = document["kind"], plain_name(document)
        if kind == "Deployment" and name in (API, RUNNER):
            deployments[name] = copy.deepcopy(document)
        elif kind == "ConfigMap" and name == CONFIG:
            configmap = document
        elif kind == "Service" and name in (API, RUNNER):
            services[name] = document
        else:
            not_played.add((kind, name))
    assert configmap is not None
    assert set(services) == set(deployments), "a Service per serving Deployment"

    play = LocalPlay(profile, {}, configmap, {}, {}, not_played)
    for name in sorted(deployments, key=lambda n: n != RUNNER):  # the runner first
        deployment = deployments[name]
        spec = deployment["spec"]
        if spec.get("replicas", 1) != 1:
            play.rewrites.append(f"{name}: replicas {spec['replicas']} -> 1")
            spec["replicas"] = 1
        (container,) = spec["template"]["spec"]["containers"]
        play.rewrites.append(f"{name}: image {container['image']} -> {image}")
        container["image"] = image
        play.probes[name] = {
            probe: container[probe]["httpGet"]["path"]
            for probe in ("readinessProbe", "livenessProbe")
        }
        # podman 4.3 turns a livenessProbe into a healthcheck `curl -f http://localhost:0/livez`
        # (a named port becomes 0; the image has no curl) that restarts the container once it
        # fails, where systemd runs healthchecks; the test probes as the kubelet does instead
        del container["livenessProbe"]
        play.rewrites.append(f"{name}: livenessProbe not played (the test GETs its path)")
        for variable in container.get("env", []):
            if variable["name"] == "CREDIT_RISK_RUNNER_DEVICE" and variable["value"] != "cpu":
                play.rewrites.append(f"{name}: CREDIT_RISK_RUNNER_DEVICE {variable['value']} -> cpu")
                variable["value"] = "cpu"
        for bound in ("requests", "limits"):
            if GPU in container.get("resources", {}).get(bound, {}):
                del container["resources"][bound][GPU]
                play.rewrites.append(f"{name}: resources.{bound}[{GPU}] dropped")
        service = services[name]
        (port,) = service["spec"]["ports"]
        assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
        if name == API:  # the public Service: published on loopback
            (http,) = [p for p in container["ports"] if p["name"] == port["targetPort"]]
            http.update(hostPort=api_port, hostIP="127.0.0.1")
            play.rewrites.append(
                f"Service {name} (port {port['port']}) -> hostPort 127.0.0.1:{api_port}"
            )
        else:  # reached inside the cluster by its name: a network alias of the pod
            assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
            assert port["port"] == port_number(container, port["targetPort"])
            play.aliases[name] = name
            play.rewrites.append(f"Service {name} -> network alias {name} of its pod")
        play.deployments[name] = deployment
    return play


def port_number(container: dict, name_or_number: str | int) -> int:
    if isinstance(name_or_number, int):
        return name_or_number
    (port,) = [p for p in container["ports"] if p["name"] == name_or_number]
    return int(port["containerPort"])


def secret_payload(values: dict[str, str]) -> str:
    """What podman 4.3's kube play reads for a `secretKeyRef`: a podman secret holding the
    Kubernetes Secret's `data` as JSON (key -> base64). A `kind: Secret` in the played YAML
    is stored as YAML there and then refused ("not valid JSON")."""
    return json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in values.items()})


def wait_until(condition: Callable[[], bool], timeout_s: float, step_s: float = 0.1) -> float | None:
    """Seconds until ``condition`` held, or None."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if condition():
            return time.monotonic() - start
        time.sleep(step_s)
    return None


def answers(url: str, timeout_s: float = 3) -> int | None:
    """The status of GET ``url``; None when nothing answered (a probe counts it a failure)."""
    try:
        return requests.get(url, timeout=timeout_s).status_code
    except requests.RequestException:
        return None


class PlayedProfile:
    """The profile's pods on a network of their own; the API on loopback."""

    def __init__(self, play: LocalPlay, folder: Path, api_port: int) -> None:
        self.play = play
        self.folder = folder
        self.url = f"http://127.0.0.1:{api_port}"
        self.network = f"credit-risk-{play.profile}-{os.getpid()}"
        self.pods: dict[str, str] = {}  # deployment -> pod name
        self.started: dict[str, float] = {}

    def start(self) -> None:
        podman("secret", "rm", SECRET, check=False)
        payload = self.folder / "secret.json"
        payload.write_text(secret_payload({"url": PREDICTION_LOG_URL}))
        podman("secret", "create", SECRET, str(payload))
        podman("network", "create", self.network)
        for name, deployment in self.play.deployments.items():
            path = self.folder / f"{name}.yaml"
            path.write_text(yaml.safe_dump_all([self.play.configmap, deployment]))
            network = self.network
            if name in self.play.aliases:
                network += f":alias={self.play.aliases[name]}"
            self.started[name] = time.monotonic()
            podman("kube", "play", "--network", network, str(path), timeout=300)
            self.pods[name] = f"{name}-pod-0"

    def container(self, name: str) -> str:
        (container,) = self.play.deployments[name]["spec"]["template"]["spec"]["containers"]
        return f"{self.pods[name]}-{container['name']}"

    def probe_inside(self, name: str, path: str) -> int | None:
        """GET ``path`` on the pod's own port, from inside it (the kubelet's view)."""
        code = (
            "import sys, urllib.request\n"
            "try:\n"
            f"    print(urllib.request.urlopen('http://127.0.0.1:3000{path}', timeout=2).status)\n"
            "except Exception as error:\n"
            "    print(getattr(error, 'code', 0))\n"
        )
        done = podman("exec", self.container(name), "python", "-c", code, check=False)
        status = done.stdout.strip()
        return int(status) if status.isdigit() and status != "0" else None

    def logs(self) -> str:
        return "\n".join(
            f"--- {self.container(name)}\n"
            + podman("logs", "--tail", "60", self.container(name), check=False).stdout
            + podman("logs", "--tail", "60", self.container(name), check=False).stderr
            for name in self.pods
        )

    def stop(self) -> None:
        for pod in self.pods.values():
            podman("pod", "rm", "-f", "-t", "5", pod, check=False, timeout=120)
        podman("network", "rm", "-f", self.network, check=False)
        podman("secret", "rm", SECRET, check=False)
