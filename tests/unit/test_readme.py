"""The README stays a true manual: its code map lists exactly the modules that exist, its
configuration table (docs/configuration.md) is the settings classes' own fields, defaults and
descriptions, and the
commands it shows exist. (Its curl examples run against a real server in
tests/e2e/test_readme_examples.py.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings

from api.settings import ApiSettings, RunnerClientSettings
from model_artifact.settings import SOURCE_ROOT, DecisionSettings, ReasonSettings, RegistrySettings
from monitoring.settings import CanarySettings, MonitoringSettings
from runners.settings import RunnerSettings
from serving.settings import WorkerSettings
from training.settings import PromotionSettings, TrainingConfig

README = SOURCE_ROOT / "README.md"
CONFIGURATION = SOURCE_ROOT / "docs" / "configuration.md"  # the full table; README has a digest
# In the README's order: the concerns a deployment tunes, then the lifecycle steps.
SETTINGS: tuple[type[BaseSettings], ...] = (
    RegistrySettings,
    ApiSettings,
    RunnerClientSettings,
    RunnerSettings,
    WorkerSettings,
    MonitoringSettings,
    CanarySettings,
    DecisionSettings,
    ReasonSettings,
    TrainingConfig,
    PromotionSettings,
)
PACKAGES = (
    "credit_risk",
    "model_artifact",
    "monitoring",
    "serving",
    "runners",
    "api",
    "batch",
    "training",
)


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def shown_default(value: Any) -> str:
    """A default as a reader should see it: no machine-specific absolute paths."""
    if value is None:
        return "unset"
    if isinstance(value, bool | tuple):  # as the environment spells them
        value = json.dumps(value)
    if isinstance(value, Path):
        value = value.relative_to(SOURCE_ROOT)
    return f"`{str(value).replace(str(Path.home()), '~')}`"


def env_name(settings: type[BaseSettings], field: str) -> str:
    info = settings.model_fields[field]
    if isinstance(info.validation_alias, str):
        return info.validation_alias
    return f"{settings.model_config.get('env_prefix', '')}{field}".upper()


def config_rows() -> list[str]:
    """The configuration table's rows, generated from the settings classes."""
    rows = []
    for settings in SETTINGS:
        for field, info in settings.model_fields.items():
            rows.append(
                f"| `{env_name(settings, field)}` | {shown_default(info.default)} | "
                f"{settings.__name__} | {info.description} |"
            )
    return rows


def test_configuration_table_is_generated_from_the_settings_classes():
    text = CONFIGURATION.read_text()
    table = [line for line in text.splitlines() if line.startswith("| `")]
    expected = config_rows()
    assert table == expected, "docs/configuration.md table, regenerated:\n" + "\n".join(expected)


def test_the_readme_digest_names_only_real_settings():
    names = {env_name(s, f).split("__")[0] for s in SETTINGS for f in s.model_fields}
    digest = re.findall(r"`((?:CREDIT_RISK|MLFLOW)_[A-Z_]+?)(?:__\*)?`", section("Configuration"))
    assert digest
    assert set(digest) <= names | {"CREDIT_RISK_DECISION"}, set(digest) - names


def test_every_setting_is_described():
    missing = [
        f"{s.__name__}.{f}"
        for s in SETTINGS
        for f, i in s.model_fields.items()
        if not i.description
    ]
    assert not missing


def test_code_map_lists_exactly_the_modules_that_exist():
    """loadtests has subpackages by job: its modules are listed as `load/traffic`."""
    listed: dict[str, set[str]] = {}
    for line in section("Code map").splitlines():
        match = re.match(r"\| `(\w+)/` \|.*\| (.*) \|$", line)
        if match:
            listed[match[1]] = set(re.findall(r"`([\w/]+)`", match[2]))
    actual = {
        package: {p.stem for p in (SOURCE_ROOT / package).glob("*.py") if p.stem != "__init__"}
        for package in PACKAGES
    }
    loadtests = SOURCE_ROOT / "loadtests"
    actual["loadtests"] = {
        p.relative_to(loadtests).with_suffix("").as_posix()
        for p in loadtests.rglob("*.py")
        if p.stem != "__init__" and "reports" not in p.relative_to(loadtests).parts
    }
    assert listed == actual


def test_make_targets_the_readme_names_exist():
    targets = subprocess.run(
        ["make", "-s", "help"], cwd=SOURCE_ROOT, capture_output=True, text=True, check=True
    ).stdout
    named = set(re.findall(r"`make ([a-z-]+)", README.read_text()))
    available = {line.split()[0] for line in targets.splitlines() if line.strip()}
    assert named
    assert named <= available, named - available


def test_python_entry_points_the_readme_names_answer_help():
    modules = set(re.findall(r"python -m ([a-z_]+\.[a-z_]+)", README.read_text()))
    assert {"training.train", "training.promote", "batch.score"} <= modules
    for module in sorted(modules):
        shown = subprocess.run(
            [sys.executable, "-m", module, "--help"],
            cwd=SOURCE_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert shown.returncode == 0, (module, shown.stderr[-2000:])


def test_readme_is_a_manual_not_a_diary():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    assert not re.search(
        r"earlier (the same|that) day|[Tt]ried and dropped|git show [0-9a-f]{7}", text
    )
