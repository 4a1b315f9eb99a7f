"""The pyfunc behind ``mlflow models serve``: bad input is a one-line 400, never a stack trace.

A tiny untrained model is saved as the pyfunc the registry logs (same adapter, predictor and
signature) and served by MLflow's own scoring app through its test client.
"""

from __future__ import annotations

import json

import mlflow.pyfunc
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.pyfunc import scoring_server

from recsys.config import ModelConfig
from recsys.models import io
from recsys.models.seqrec import SeqRec
from recsys.registry.pyfunc import PredictorPyfunc
from recsys.scoring.pyfunc import SeqRecPredictor
from recsys.training import PREDICTOR

ITEMS = [f"i{n}" for n in range(12)]

BAD = [  # (input rows, params, words the one-line message must hold)
    ({"item_ids": [["i1"]]}, {"k": -3}, "k must be from 1 to 12"),
    ({"item_ids": [["i1"]]}, {"k": 0}, "k must be from 1 to 12"),
    ({"item_ids": [["i1"]]}, {"k": 13}, "k must be from 1 to 12 (the catalogue size), got 13"),
    ({"history": [["i1"]]}, {}, "item_ids"),
    ({"item_ids": ["i1"]}, {}, "list of strings"),
    ({"item_ids": [["i1"]], "event_types": [["view", "click"]]}, {}, "one per item id"),
]

# Through the server MLflow's signature checks come first (column, list type, param types);
# what passes them and is still wrong (k's range) is the predictor's to refuse.
SERVED_BAD = [  # (input rows, params, error code, words of the message's last line)
    *[(rows, params, "INVALID_PARAMETER_VALUE", words) for rows, params, words in BAD[:3]],
    ({"history": [["i1"]]}, {}, "INVALID_PARAMETER_VALUE", "missing inputs ['item_ids']"),
    ({"item_ids": ["i1"]}, {}, "BAD_REQUEST", "Expected data to be list"),
    ({"item_ids": [["i1"]]}, {"k": "many"}, "INVALID_PARAMETER_VALUE", "'k'"),
    ({"item_ids": [["i1"]]}, {"k": 2.5}, "INVALID_PARAMETER_VALUE", "'k'"),
    ({"item_ids": [["i1"]]}, {"exclude_seen": "maybe"}, "INVALID_PARAMETER_VALUE",
     "'exclude_seen'"),
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("pyfunc")
    net = SeqRec(ModelConfig(d_model=16, n_blocks=1, n_heads=1, max_len=8, use_text=False),
                 len(ITEMS))
    io.save(net, root / "weights", ITEMS)
    example, output, params = SeqRecPredictor.examples(ITEMS[:2])
    mlflow.pyfunc.save_model(
        root / "model", python_model=PredictorPyfunc(), artifacts={"model": str(root / "weights")},
        model_config={"predictor": PREDICTOR}, pip_requirements=["recsys"],
        signature=infer_signature(example, output, params=params))
    return str(root / "model")


@pytest.fixture(scope="module")
def model(saved):
    return mlflow.pyfunc.load_model(saved)


@pytest.fixture
def server(model, monkeypatch):
    # init() marks the process as a serving environment; monkeypatch puts the variable back.
    monkeypatch.setenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "false")
    with TestClient(scoring_server.init(model)) as client:
        yield client


def _post(server, rows: dict, params: dict):
    body = {"dataframe_split": pd.DataFrame(rows).to_dict(orient="split"), "params": params}
    return server.post("/invocations", content=json.dumps(body),
                       headers={"content-type": "application/json"})


def test_good_input_is_answered(server):
    r = _post(server, {"item_ids": [["i1", "i2"], []]}, {"k": 3})
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert [len(p["item_ids"]) for p in predictions] == [3, 3]
    assert all(set(p["item_ids"]) <= set(ITEMS) for p in predictions)


@pytest.mark.parametrize(("rows", "params", "words"), BAD)
def test_the_predictor_refuses_bad_input_in_one_line(rows, params, words, model):
    predictor = model.unwrap_python_model().predictor
    assert isinstance(predictor, SeqRecPredictor)
    with pytest.raises(ValueError) as info:
        predictor.predict(pd.DataFrame(rows), params)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("rows", "params", "code", "words"), SERVED_BAD)
def test_the_scoring_server_answers_bad_input_with_a_400_and_no_stack_trace(
        server, rows, params, code, words):
    r = _post(server, rows, params)
    body = r.json()
    assert r.status_code == 400, r.text
    assert body["error_code"] == code
    assert "stack_trace" not in body and "Traceback" not in r.text
    # MLflow prefixes "Failed to predict data '<the frame>'"; the error is the last line.
    assert words in body["message"].splitlines()[-1], body["message"]


@pytest.mark.parametrize(("params", "words"), [
    ({"k": True}, "k must be a whole number"), ({"k": "3"}, "k must be a whole number"),
    ({"exclude_seen": "yes"}, "exclude_seen must be true or false"),
])
def test_the_predictor_checks_param_types_itself(model, params, words):
    with pytest.raises(MlflowException, match=words) as info:
        model.unwrap_python_model().predict(None, pd.DataFrame({"item_ids": [["i1"]]}), params)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"

