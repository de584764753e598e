"""The monitoring shipped in deploy/monitoring: the alerting rules pass `promtool check rules`
and their own unit tests (`promtool test rules`), every alert is tested both firing and silent,
the rules' constants agree with the service's settings and the scrape job, the Prometheus
configuration is valid, and the Grafana dashboard parses, lays out, is valid PromQL and queries
only metrics the service exports. promtool is required, never skipped: `make setup` installs it."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from model_artifact.settings import SOURCE_ROOT as REPO_ROOT
from monitoring import metrics
from monitoring.settings import CanarySettings, MonitoringSettings
from training.settings import PromotionSettings

MONITORING = REPO_ROOT / "deploy" / "monitoring"
RULES = MONITORING / "alerts.yml"
RULE_TESTS = MONITORING / "alerts.test.yml"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"
GRAFANA = MONITORING / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
CONFIGMAP = REPO_ROOT / "deploy" / "k8s" / "base" / "configmap.yaml"
PROMTOOL_HINT = (
    "promtool is not on PATH: run `make setup` (as root it installs Debian's prometheus "
    "package), or apt-get install -y --no-install-recommends prometheus"
)

# Metric families the rules and the dashboard may query, as PromQL sees them (counters with
# _total, histograms as _bucket/_sum/_count). Mirrors monitoring/metrics.py and BentoML's HTTP
# instruments; both are checked against their sources below.
SERVICE_METRICS = {
    "credit_risk_probability_default": "histogram",
    "credit_risk_decisions": "counter",
    "credit_risk_feature_missing": "counter",
    "credit_risk_feature_out_of_training_range": "counter",
    "credit_risk_contract_rejections": "counter",
    "credit_risk_runner_batch_rows": "histogram",
    "credit_risk_runner_call_retries": "counter",
    "credit_risk_runner_busy": "counter",
    "credit_risk_model_info": "gauge",
    "credit_risk_drift_psi": "gauge",
    "credit_risk_drift_window_rows": "gauge",
    "credit_risk_drift_alert_threshold": "gauge",
    "credit_risk_drift_alert": "gauge",
    "credit_risk_estimated_roc_auc": "gauge",
    "credit_risk_estimated_default_rate": "gauge",
    "credit_risk_training_roc_auc": "gauge",
    "credit_risk_training_estimated_roc_auc": "gauge",
    "credit_risk_training_default_rate": "gauge",
    "credit_risk_estimated_auc_alert": "gauge",
    "credit_risk_prediction_log_backlog_rows": "gauge",
    "credit_risk_prediction_log_oldest_unshipped_age_seconds": "gauge",
    "credit_risk_prediction_log_unwritable_rows": "counter",
    "credit_risk_prediction_log_ship_retries": "counter",
    "credit_risk_canary_share": "gauge",
    "credit_risk_canary_rollbacks": "counter",
    "credit_risk_arm_requests": "counter",
    "credit_risk_arm_latency_seconds": "histogram",
    "credit_risk_arm_estimated_roc_auc": "gauge",
    "credit_risk_canary_score_psi": "gauge",
}
# BentoML 1.4 services (`@bentoml.service`): RunnerTrafficMetricsMiddleware under the
# api_server.metrics.namespace `bentoml_service`, labels endpoint, http_response_code,
# runner_name (the BentoML service name), service_name, service_version.
BENTOML_NAMESPACE = "bentoml_service"
BENTOML_METRICS = {
    "request": "counter",  # bentoml_service_request_total
    "request_duration_seconds": "histogram",
    "request_in_progress": "gauge",
    "last_request_timestamp_seconds": "gauge",
}
BENTOML_SERVICES = {"credit_risk_api": "service.py", "credit_risk_runner": "runners/service.py"}
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def series_names(families: dict[str, str], prefix: str = "") -> set[str]:
    return {
        f"{prefix}{name}{suffix}" for name, kind in families.items() for suffix in SUFFIXES[kind]
    }


KNOWN_SERIES = (
    series_names(SERVICE_METRICS)
    | series_names(BENTOML_METRICS, f"{BENTOML_NAMESPACE}_")
    | {"up"}  # Prometheus's own, per scrape target
)
METRIC_TOKEN = re.compile(r"\b(?:credit_risk|bentoml)_[a-zA-Z0-9_]+\b|\bup\b(?=\s*\{)")


def referenced_metrics(expr: str) -> set[str]:
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(METRIC_TOKEN.findall(without_strings))


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(PROMTOOL_HINT)
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.args}:\n{result.stdout}\n{result.stderr}"


def alert_rules() -> dict[str, dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def dashboard_targets(dashboard: dict) -> list[tuple[dict, dict]]:
    return [
        (panel, target)
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel.get("targets", [])
    ]


# --- alerting rules ------------------------------------------------------------------------


def test_rules_pass_promtool_check():
    result = run_promtool("check", "rules", str(RULES))
    assert_ok(result)
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_rules_pass_their_unit_tests():
    assert_ok(run_promtool("test", "rules", str(RULE_TESTS)))


def test_the_alerts_the_service_needs_are_there_with_severity_and_annotations():
    rules = alert_rules()
    assert {
        "CreditRiskFeatureDrift",
        "CreditRiskScoreDrift",
        "CreditRiskEstimatedAucDrop",
        "CreditRiskHighErrorRate",
        "CreditRiskShedding",
        "CreditRiskPredictionLogBacklogHigh",
        "CreditRiskPredictionLogBacklogGrowing",
        "CreditRiskModelInfoMissing",
        "CreditRiskTargetDown",
        "CanaryRolledBack",
        "CanaryWorseThanChampion",
        "CanaryFailing",
    } <= set(rules)
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert re.fullmatch(r"\d+m", rule["for"]), name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name


def test_every_alert_is_tested_firing_and_silent():
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    for name in alert_rules():
        assert cases.get(name) == {True, False}, f"{name}: needs a firing and a silent case"


def test_rule_constants_match_the_service_settings_and_the_configmap():
    """The rules cannot read the service's settings, so the minimum drift window and the AUC
    drop are written into them; they must be the defaults and what the ConfigMap sets."""
    rules = alert_rules()
    config = yaml.safe_load(CONFIGMAP.read_text())["data"]
    fields = MonitoringSettings.model_fields
    min_window = fields["drift_min_window"].default
    assert int(config["CREDIT_RISK_DRIFT_MIN_WINDOW"]) == min_window
    for name in ("CreditRiskFeatureDrift", "CreditRiskScoreDrift", "CreditRiskEstimatedAucDrop"):
        assert re.findall(r">= (\d+)", rules[name]["expr"]) == [str(min_window)], name
    drop = fields["estimated_auc_drop_alert"].default
    assert float(config["CREDIT_RISK_ESTIMATED_AUC_DROP_ALERT"]) == drop
    assert re.search(r"\) > ([0-9.]+)\n", rules["CreditRiskEstimatedAucDrop"]["expr"]).group(
        1
    ) == str(drop)
    # the threshold itself is the service's gauge, never a number in the rule
    for name in ("CreditRiskFeatureDrift", "CreditRiskScoreDrift"):
        assert "credit_risk_drift_alert_threshold" in rules[name]["expr"]


def test_canary_alerts_sit_below_the_automatic_rollback():
    """The canary alerts warn of what the automatic rollback (CanarySettings) tolerates: an
    estimated AUC gap beyond what promotion allows, a failure excess half the rollback's, on at
    least the rows the rollback needs before it judges."""
    rules = alert_rules()
    canary = CanarySettings.model_fields
    worse = rules["CanaryWorseThanChampion"]["expr"]
    auc_gap = float(re.search(r"\) > ([0-9.]+)\n", worse).group(1))
    assert auc_gap == PromotionSettings.model_fields["promotion_max_auc_drop"].default
    assert auc_gap < canary["max_auc_drop"].default
    assert re.findall(r">= (\d+)", worse) == [str(canary["min_rows"].default)]
    failing = rules["CanaryFailing"]["expr"]
    excess = float(re.search(r"\) > ([0-9.]+)\n", failing).group(1))
    assert excess == canary["max_failure_rate_excess"].default / 2
    for name in ("CanaryRolledBack", "CanaryWorseThanChampion", "CanaryFailing"):
        assert rules[name]["labels"]["severity"] == "warning", name  # the rollback acts first


def test_rules_select_the_scrape_job_and_the_bentoml_services():
    (job,) = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    text = RULES.read_text()
    assert set(re.findall(r'job="([^"]+)"', text)) == {job["job_name"]}
    for service, source in BENTOML_SERVICES.items():
        assert re.search(rf'name="{service}"', (REPO_ROOT / source).read_text()), service
        assert service.startswith("credit_risk_")  # the rules select runner_name=~"credit_risk_.*"


# --- metric names ----------------------------------------------------------------------------


def test_known_metrics_mirror_monitoring_metrics():
    defined = {
        family.name: family.type
        for collector in vars(metrics).values()
        if isinstance(collector, MetricWrapperBase)
        for family in collector.describe()
    }
    assert defined == SERVICE_METRICS, (
        "monitoring/metrics.py changed: update SERVICE_METRICS, and the rules and dashboard "
        "in deploy/monitoring where a name they query changed"
    )


def test_known_bentoml_metrics_match_the_installed_bentoml():
    """Services load BentoML's version 2 configuration; its HTTP metrics come from
    RunnerTrafficMetricsMiddleware, installed by _bentoml_impl's service app."""
    import bentoml
    from bentoml._internal.server.http import instruments

    package = Path(bentoml.__file__).parent
    defaults = package / "_internal" / "configuration" / "v2" / "default_configuration.yaml"
    assert yaml.safe_load(defaults.read_text())["services"]["metrics"]["namespace"] == (
        BENTOML_NAMESPACE
    )
    source = inspect.getsource(instruments.RunnerTrafficMetricsMiddleware)
    for name, kind in BENTOML_METRICS.items():
        assert f'name="{name}{"_total" if kind == "counter" else ""}"' in source, name
    for label in ("endpoint", "http_response_code", "runner_name"):
        assert f'"{label}"' in source, label
    app = package.parent / "_bentoml_impl" / "server" / "app.py"
    assert "RunnerTrafficMetricsMiddleware" in app.read_text()


def test_rules_query_only_exported_metrics():
    for name, rule in alert_rules().items():
        used = referenced_metrics(rule["expr"])
        assert used, name
        assert used <= KNOWN_SERIES, f"{name}: unknown {used - KNOWN_SERIES}"


# --- Prometheus configuration ----------------------------------------------------------------


def test_prometheus_config_passes_promtool(tmp_path: Path):
    """Debian's promtool is built without Kubernetes service discovery, so the pod discovery is
    swapped for a static target; everything else (relabelling, rule files) is checked as is."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    config["rule_files"] = [str(RULES)]
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs") == [
            {"role": "pod", "namespaces": {"own_namespace": True}}
        ]
        job["static_configs"] = [{"targets": ["127.0.0.1:3000"]}]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    assert_ok(run_promtool("check", "config", str(checked)))


def test_scrape_job_keeps_annotated_pods_and_labels_them():
    (job,) = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    relabel = job["relabel_configs"]
    targets = {r.get("target_label") for r in relabel}
    assert {"namespace", "pod", "app", "__address__", "__metrics_path__"} <= targets
    (address,) = [r for r in relabel if r.get("target_label") == "__address__"]
    pattern = re.compile(address["regex"])
    for discovered, host in (("10.1.2.3:3000", "10.1.2.3"), ("10.1.2.3", "10.1.2.3")):
        match = pattern.fullmatch(f"{discovered};3000")
        assert match, discovered
        assert match.expand(address["replacement"].replace("$", "\\")) == f"{host}:3000"


# --- Grafana ---------------------------------------------------------------------------------


def test_dashboards_exist():
    assert [p.name for p in DASHBOARDS] == ["credit-risk.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_dashboard_is_valid_and_laid_out(path: Path):
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] != "row":
            assert panel["title"]
            assert panel["targets"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert variable["type"] == "datasource"
    assert variable["query"] == "prometheus"
    for panel, target in dashboard_targets(dashboard):
        assert target["expr"].strip(), panel["title"]
        assert target["refId"], panel["title"]
        assert target["datasource"]["uid"] == "${datasource}", panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_dashboard_queries_only_exported_metrics(path: Path):
    used: set[str] = set()
    for panel, target in dashboard_targets(json.loads(path.read_text())):
        found = referenced_metrics(target["expr"])
        assert found, f"{panel['title']}: {target['expr']}"
        assert found <= KNOWN_SERIES, f"{panel['title']}: unknown {found - KNOWN_SERIES}"
        used |= found
    # what the dashboard is for: traffic, latency, shedding, decisions, scores, drift against
    # its threshold, estimated vs training quality, the canary against the champion, the log
    # backlog, runner batches
    assert {
        "bentoml_service_request_total",
        "bentoml_service_request_duration_seconds_bucket",
        "credit_risk_decisions_total",
        "credit_risk_probability_default_bucket",
        "credit_risk_drift_psi",
        "credit_risk_drift_alert_threshold",
        "credit_risk_estimated_roc_auc",
        "credit_risk_training_roc_auc",
        "credit_risk_estimated_default_rate",
        "credit_risk_training_default_rate",
        "credit_risk_prediction_log_backlog_rows",
        "credit_risk_runner_batch_rows_bucket",
        "credit_risk_canary_share",
        "credit_risk_canary_rollbacks_total",
        "credit_risk_arm_requests_total",
        "credit_risk_arm_latency_seconds_bucket",
        "credit_risk_arm_estimated_roc_auc",
        "credit_risk_canary_score_psi",
    } <= used


GRAFANA_MACROS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_dashboard_queries_are_valid_promql(path: Path, tmp_path: Path):
    """Each query, Grafana's macros and variables filled in, as a recording rule for promtool."""
    rules = []
    for panel, target in dashboard_targets(json.loads(path.read_text())):
        expr = target["expr"]
        for macro, value in GRAFANA_MACROS.items():
            expr = expr.replace(macro, value)
        expr = expr.replace("$namespace", ".*")
        assert "$" not in expr, f"{panel['title']}: unknown variable in {expr}"
        rules.append({"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": expr})
    checked = tmp_path / "dashboard_queries.yml"
    checked.write_text(yaml.safe_dump({"groups": [{"name": path.stem, "rules": rules}]}))
    assert_ok(run_promtool("check", "rules", str(checked)))


def test_grafana_provisioning_files():
    (source,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "${PROMETHEUS_URL}"
    assert source["isDefault"] is True
    (provider,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "credit-risk.yaml").read_text()
    )["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]
    assert provider["allowUiUpdates"] is False  # the files are the source of truth
