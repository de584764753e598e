"""Imports run one way, from entry points down to the domain: a module may import only the
project packages its layer allows, so the domain stays free of serving and training code and
no lifecycle step reaches into a service it does not run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from model_artifact.settings import SOURCE_ROOT

DOMAIN = {"credit_risk"}
ARTIFACT = DOMAIN | {"model_artifact"}
MONITORING = ARTIFACT | {"monitoring"}
# Each package and the project packages it may import (itself included).
ALLOWED: dict[str, set[str]] = {
    "credit_risk": DOMAIN,
    "model_artifact": ARTIFACT,
    "monitoring": MONITORING,
    "runner": MONITORING | {"runner"},
    "api": MONITORING | {"runner", "api"},  # the API declares its runner dependency
    "batch": ARTIFACT | {"batch"},
    "training": ARTIFACT | {"training"},
    "loadtests": MONITORING | {"runner", "api", "batch", "training", "loadtests"},
}


def project_imports(path: Path) -> set[str]:
    """Top-level project packages a module imports, function-level imports included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & set(ALLOWED)
    return found


MODULES = sorted(
    path.relative_to(SOURCE_ROOT)
    for package in ALLOWED
    for path in (SOURCE_ROOT / package).rglob("*.py")
)


@pytest.mark.parametrize("module", MODULES, ids=str)
def test_module_imports_only_what_its_layer_allows(module):
    package = module.parts[0]
    forbidden = project_imports(SOURCE_ROOT / module) - ALLOWED[package]
    assert not forbidden, f"{module} imports {sorted(forbidden)}"


def test_every_product_package_has_a_layer():
    packages = {p.parent.name for p in SOURCE_ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(ALLOWED)


def test_the_checker_sees_a_violation(tmp_path):
    module = tmp_path / "leaky.py"
    module.write_text("def f():\n    from api.service import CreditRiskAPI\n")
    assert project_imports(module) == {"api"}
