"""Each default has one home, the typed config: the CLI and the flows are built from it."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import typer
import yaml
from pydantic import BaseModel, ValidationError

from recsys import config as C
from recsys.cli import app
from recsys.cli_options import field_spec

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [c for c in vars(C).values()
           if isinstance(c, type) and issubclass(c, C._Config) and c is not C._Config]


def _commands() -> dict:
    out = {}

    def walk(group, prefix: str) -> None:
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                walk(cmd, f"{prefix}{name} ")
            else:
                out[prefix + name] = cmd
    walk(typer.main.get_command(app), "")
    return out


def test_every_config_field_has_a_description():
    # IngestConfig's validation limits are the data contract's (docs/data-contract.md).
    missing = [f"{c.__name__}.{name}" for c in CONFIGS for name, f in c.model_fields.items()
               if not f.description and c is not C.IngestConfig]
    assert not missing, missing


def test_cli_options_take_default_and_help_from_the_config():
    checked = 0
    for name, cmd in _commands().items():
        groups = getattr(cmd.callback, "__config_options__", {})
        params = {p.name: p for p in cmd.params}
        for group, (cls, opts) in groups.items():
            for opt in opts:
                param = params[f"{group}__{opt.field}"]
                spec = field_spec(cls, opt.field)
                expected = None if isinstance(spec.default, tuple) else spec.default
                assert param.default == expected, (name, opt.field)
                assert param.help == (spec.help or opt.help), (name, opt.field)
                checked += 1
    assert checked >= 50  # train alone exposes ~30 fields


def test_the_documented_option_names_still_exist():
    opts = {name: {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
            for name, cmd in _commands().items()}
    assert {"--epochs", "--heads", "--blocks", "--lr", "--max-len", "--text", "--no-text",
            "--exclude-seen", "--d-model", "--patience", "--negatives", "--register",
            "--no-progress", "--devices", "--init-std"} <= opts["train"]
    assert {"--max-steps", "--batch-size", "--tolerance", "--keep-full"} <= opts["update"]
    assert {"--window-days", "--chunk-size", "--exclude-category", "--no-progress"} \
        <= opts["score"]
    assert {"--dataset", "--format", "--preset", "--windows", "--epochs", "--d-model"} \
        <= opts["backtest"]
    assert {"--preset", "--epochs", "--speedup", "--prefect-port"} <= opts["stack up"]
    assert {"--preset", "--epochs", "--live-fraction", "--updates"} <= opts["demo"]


def test_cli_py_restates_no_config_default():
    """A literal default in a command's signature must not be a config field's business."""
    fields = {name for c in CONFIGS for name in c.model_fields}
    fields |= {"epochs", "blocks", "heads", "negatives", "text", "register", "progress", "tick"}
    own = {"seed": "generate's synthetic-data seed, not TrainConfig.seed",
           "max_ticks": "replay's stop (ReplayConfig)",
           "no_sleep": "replay's realtime flag",
           "live_fraction": "demo's share of live events", "updates": "demo's update count",
           "bootstrap": "stack up's switch", "reason": "an operator's note"}
    tree = ast.parse((ROOT / "recsys" / "cli.py").read_text())
    found = {}
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        args = fn.args.args[len(fn.args.args) - len(fn.args.defaults):] + fn.args.kwonlyargs
        defaults = fn.args.defaults + [d for d in fn.args.kw_defaults if d is not None]
        for arg, default in zip(args, defaults, strict=False):
            if isinstance(default, ast.Constant) and default.value is not None:
                found[f"{fn.name}.{arg.arg}"] = arg.arg
    restated = {k for k, name in found.items() if name in fields and name not in own}
    assert not restated, restated


# -- flows ---------------------------------------------------------------------------------
def _flows():
    from flows.backtest import backtest
    from flows.build_features import build_features
    from flows.experiments import experiment_decision
    from flows.full_retrain import full_retrain
    from flows.ingest import ingest
    from flows.micro_batch import micro_batch_update
    from flows.online_report import online_report
    from flows.replay import replay
    from flows.score import score

    return [backtest, build_features, experiment_decision, full_retrain, ingest,
            micro_batch_update, online_report, replay, score]


def test_flow_parameters_are_the_typed_configs_with_their_defaults():
    flow_only = {"max_delay_s", "score_after_promotion", "files", "kind", "dataset", "fmt",
                 "speedup", "tick_seconds", "max_ticks", "loop"}
    typed = 0
    for flow in _flows():
        for p in inspect.signature(flow.fn).parameters.values():
            cls = p.annotation if isinstance(p.annotation, type) else None
            hints = flow.fn.__annotations__
            cls = getattr(C, str(hints.get(p.name)), cls)
            if isinstance(cls, type) and issubclass(cls, BaseModel):
                assert p.default == cls(), (flow.name, p.name)
                typed += 1
            else:
                assert p.name in flow_only, f"{flow.name}: scalar parameter {p.name}"
    assert typed >= 12
    from flows.replay import replay
    from recsys.data.replay import ReplayConfig

    params = inspect.signature(replay.fn).parameters
    assert params["speedup"].default == ReplayConfig().speedup
    assert params["tick_seconds"].default == ReplayConfig().tick_seconds


def test_the_flow_form_shows_nested_fields_with_descriptions():
    from prefect.utilities.callables import parameter_schema_from_entrypoint

    # what `prefect deploy` sends to the server, and the UI renders
    schema = parameter_schema_from_entrypoint(
        str(ROOT / "flows" / "full_retrain.py") + ":full_retrain").model_dump_for_openapi()
    assert {"features", "model", "training", "evaluation"} <= set(schema["properties"])
    epochs = schema["definitions"]["TrainConfig"]["properties"]["max_epochs"]
    assert epochs["default"] == C.TrainConfig().max_epochs
    assert epochs["description"] == C.TrainConfig.model_fields["max_epochs"].description
    assert schema["definitions"]["ModelConfig"]["properties"]["d_model"]["description"]


def _validate(flow, parameters: dict) -> None:
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools import validate

    schema = parameter_schema(flow.fn).model_dump_for_openapi()
    validate(parameters, schema, raise_on_error=True, preprocess=True, ignore_required=True)
    if parameters:  # ... and the flow itself builds its configs from the partial mappings
        flow.validate_parameters(parameters)


def test_partial_nested_overrides_validate_and_typos_do_not():
    from flows.full_retrain import full_retrain

    _validate(full_retrain, {"model": {"d_model": 128}, "training": {"max_epochs": 40}})
    built = full_retrain.validate_parameters({"training": {"max_epochs": 40}})
    assert built["training"] == C.TrainConfig(max_epochs=40)
    with pytest.raises(Exception, match="max_epochz"):
        _validate(full_retrain, {"training": {"max_epochz": 40}})
    with pytest.raises((ValidationError, Exception)):
        full_retrain.validate_parameters({"training": {"max_epochs": 0}})


def test_prefect_yaml_overrides_only_and_every_override_validates():
    flows = {f"flows/{f.fn.__module__.split('.')[-1]}.py:{f.fn.__name__}": f for f in _flows()}
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert {d["entrypoint"] for d in spec["deployments"]} <= set(flows)
    for deployment in spec["deployments"]:
        flow = flows[deployment["entrypoint"]]
        parameters = deployment.get("parameters") or {}
        _validate(flow, parameters)
        defaults = {p.name: p.default for p in inspect.signature(flow.fn).parameters.values()}
        for name, value in parameters.items():
            if isinstance(value, dict):
                cls = type(defaults[name])
                assert all(value[k] != getattr(cls(), k) for k in value), (name, value)
            else:
                assert value != defaults[name], (deployment["name"], name)


def test_the_popularity_window_has_one_home():
    from recsys.scoring.history import RecentHistories

    assert "popularity_window_days" not in C.TrainConfig.model_fields
    default = inspect.signature(RecentHistories).parameters["popular_window_days"].default
    assert default is None  # None = FeatureConfig.popularity_window_days
