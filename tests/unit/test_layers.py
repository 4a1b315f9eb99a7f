"""Imports run one way, down the layers (docs: STYLE "Layers"); this test keeps it so.

Every module under ``recsys/`` and ``flows/`` is parsed (not imported) with ``ast``; each
import, including the lazy ones inside functions, is checked against the layer table below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Longest matching dotted prefix wins. A module no prefix places fails the test: a new module
# must be given a layer here.
LAYERS: dict[str, int] = {
    # 7 entry points: parse, call one use case, print
    "flows": 7, "recsys.cli": 7, "recsys.cli_options": 7,
    # 6 use cases composing the rooms below
    "recsys.stack": 6, "recsys.forget": 6, "recsys.orchestration": 6, "recsys.backtest_run": 6,
    "recsys.stack_survey": 6, "recsys.traffic": 6, "recsys.simulate": 6,
    "recsys.online_report_run": 6, "recsys.experiment_run": 6,
    # 5 fit and gate; serve and batch-score
    "recsys.training": 5, "recsys.scoring": 5,
    # 4 the only door to MLflow
    "recsys.registry": 4,
    # 3 metrics and the evaluator, over models and data
    "recsys.evaluation": 3,
    # 2 nn.Modules, losses, the LightningModule
    "recsys.models": 2,
    # 1 ingestion, landing, features, the data containers
    "recsys.data": 1,
    # 0 the ground floor
    "recsys": 0, "recsys.config": 0, "recsys.columns": 0, "recsys.sql": 0, "recsys.timeutil": 0,
    "recsys.faults": 0, "recsys.files": 0, "recsys.metrics": 0, "recsys._sql": 0,
    "recsys.precision": 0, "recsys.console": 0, "recsys.threads": 0,
}
# Entry points own their process: the CLI may set a third-party switch that only an environment
# variable controls (MLflow's artifact bars). Library code below it never writes os.environ.
ENTRY_POINTS = {"recsys.cli"}
ENVIRON_WRITERS = {"update", "setdefault", "pop", "popitem", "clear", "__setitem__",
                   "__delitem__"}


def layer(module: str) -> int | None:
    """The layer of a project module (None for one outside the project or not placed)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            if prefix == "recsys" and n < len(parts) and module not in LAYERS:
                return None  # recsys.<something new>: not placed yet
            return LAYERS[prefix]
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, str]:
    """Dotted name -> source of every module under recsys/ and flows/."""
    return {module_name(p): p.read_text() for top in ("recsys", "flows")
            for p in sorted((ROOT / top).rglob("*.py"))}


def imported(tree: ast.AST, module: str, known: set[str]) -> list[str]:
    """Every module ``tree`` imports; ``from pkg import name`` counts as ``pkg.name`` when
    that is a module."""
    package = module if module in known and _is_package(module) else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append(sub if sub in known else base)
    return out


def _is_package(module: str) -> bool:
    return (ROOT / Path(*module.split(".")) / "__init__.py").exists()


def _is_environ(node: ast.AST, environ_names: set[str]) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ"
            and isinstance(node.value, ast.Name) and node.value.id == "os") or \
        (isinstance(node, ast.Name) and node.id in environ_names)


def environ_writes(tree: ast.AST) -> list[int]:
    """Line numbers where ``os.environ`` is assigned, deleted or changed by a method."""
    names = {alias.asname or alias.name for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom) and node.module == "os"
             for alias in node.names if alias.name == "environ"}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, (ast.Store, ast.Del)) \
                and _is_environ(node.value, names):
            lines.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                (node.func.attr in ENVIRON_WRITERS and _is_environ(node.func.value, names))
                or (node.func.attr in {"putenv", "unsetenv"}
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "os")):
            lines.append(node.lineno)
    return lines


def violations(module: str, source: str, known: set[str]) -> dict[str, list[str]]:
    """Broken rules of one module, by rule: ``"module -> import"`` pairs or lines."""
    tree = ast.parse(source)
    found: dict[str, list[str]] = {"up": [], "scoring->training": [], "mlflow": [],
                                   "environ": [], "unplaced": []}
    own = layer(module)
    if own is None:
        found["unplaced"].append(module)
        return found
    for target in imported(tree, module, known):
        if target == "mlflow" or target.startswith("mlflow."):
            if not module.startswith("recsys.registry"):
                found["mlflow"].append(f"{module} -> {target}")
            continue
        if not (target == "recsys" or target.startswith(("recsys.", "flows"))):
            continue
        theirs = layer(target)
        if theirs is None:
            found["unplaced"].append(f"{module} -> {target}")
        elif theirs > own:
            found["up"].append(f"{module} (layer {own}) -> {target} (layer {theirs})")
        if module.startswith("recsys.scoring") and target.startswith("recsys.training"):
            found["scoring->training"].append(f"{module} -> {target}")
    if module.startswith("recsys") and module not in ENTRY_POINTS:
        found["environ"] += [f"{module}:{line}" for line in environ_writes(tree)]
    return found


@pytest.fixture(scope="module")
def found() -> dict[str, list[str]]:
    modules = project_modules()
    known = set(modules)
    out: dict[str, list[str]] = {}
    for module, source in modules.items():
        for rule, items in violations(module, source, known).items():
            out.setdefault(rule, []).extend(items)
    return out


def test_sees_the_whole_project():
    modules = project_modules()
    assert len(modules) >= 60, sorted(modules)
    for expected in ("recsys.cli", "recsys.data.containers", "recsys.registry.registry",
                     "recsys.scoring.scorer", "recsys.training.update", "flows.ingest"):
        assert expected in modules
    known = set(modules)
    checked = [t for m, src in modules.items() for t in imported(ast.parse(src), m, known)
               if t.startswith(("recsys", "flows"))]
    assert len(checked) >= 200  # the import walk really sees the project's imports


def test_every_module_has_a_layer(found):
    assert found["unplaced"] == [], "give these modules a layer in LAYERS"


def test_imports_run_down_the_layers(found):
    assert found["up"] == []


def test_scoring_never_imports_training(found):
    assert found["scoring->training"] == []


def test_mlflow_is_imported_only_under_registry(found):
    assert found["mlflow"] == []


def test_library_code_never_writes_os_environ(found):
    assert found["environ"] == []


def test_the_checks_catch_what_they_should():
    known = {"recsys.data.fake", "recsys.training.update", "recsys.scoring.fake",
             "recsys.config", "recsys.evaluation.evaluator"}
    bad = violations("recsys.data.fake", (
        "from recsys.training.update import update\n"
        "def lazy():\n    from recsys.evaluation import evaluator\n"
        "import mlflow.pyfunc\n"
        "import os\nos.environ['X'] = '1'\nos.environ.setdefault('Y', '2')\n"
        "del os.environ['X']\n"), known | {"recsys.evaluation"})
    assert bad["up"] == ["recsys.data.fake (layer 1) -> recsys.training.update (layer 5)",
                         "recsys.data.fake (layer 1) -> recsys.evaluation.evaluator (layer 3)"]
    assert bad["mlflow"] == ["recsys.data.fake -> mlflow.pyfunc"]
    assert bad["environ"] == ["recsys.data.fake:6", "recsys.data.fake:7", "recsys.data.fake:8"]
    scoring = violations("recsys.scoring.fake", "from recsys.training import update\n"
                         "from os import environ\nenviron.update(A='1')\n",
                         known | {"recsys.training"})
    assert scoring["scoring->training"] == ["recsys.scoring.fake -> recsys.training.update"]
    assert scoring["environ"] == ["recsys.scoring.fake:3"]
    fine = violations("recsys.scoring.fake", (
        "from recsys import config\nfrom recsys.config import Paths\nimport os\n"
        "x = os.environ.get('A')\n"), known)
    assert not any(fine.values())
    assert violations("recsys.newthing", "", known)["unplaced"] == ["recsys.newthing"]
    assert violations("flows.fake", "import mlflow\n", known)["mlflow"] == ["flows.fake -> mlflow"]
