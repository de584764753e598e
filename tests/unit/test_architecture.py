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
SERVING = MONITORING | {"serving"}  # what both serving processes run
# Each package and the project packages it may import (itself included). The API and the
# runner never import each other: service.py, the entry point, composes them.
ALLOWED: dict[str, set[str]] = {
    "credit_risk": DOMAIN,
    "model_artifact": ARTIFACT,
    "monitoring": MONITORING,
    "serving": SERVING,
    "runners": SERVING | {"runners"},
    "api": SERVING | {"api"},
    "service": SERVING | {"api", "runners"},
    "batch": ARTIFACT | {"batch"},
    "training": ARTIFACT | {"training"},
    "loadtests": SERVING | {"runners", "api", "batch", "training", "loadtests"},
}
PACKAGES = set(ALLOWED) - {"service"}  # service.py is a module at the top


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
    [Path("service.py")]
    + [
        path.relative_to(SOURCE_ROOT)
        for package in PACKAGES
        for path in (SOURCE_ROOT / package).rglob("*.py")
    ]
)


@pytest.mark.parametrize("module", MODULES, ids=str)
def test_module_imports_only_what_its_layer_allows(module):
    package = module.parts[0].removesuffix(".py")
    forbidden = project_imports(SOURCE_ROOT / module) - ALLOWED[package]
    assert not forbidden, f"{module} imports {sorted(forbidden)}"


def test_every_product_package_has_a_layer():
    packages = {p.parent.name for p in SOURCE_ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == PACKAGES


def test_the_api_and_the_runner_never_import_each_other():
    assert "runners" not in ALLOWED["api"]
    assert "api" not in ALLOWED["runners"]


def test_the_checker_sees_a_violation(tmp_path):
    module = tmp_path / "leaky.py"
    module.write_text("def f():\n    from runners.service import ModelRunner\n")
    assert project_imports(module) == {"runners"}
    assert project_imports(module) - ALLOWED["api"] == {"runners"}
