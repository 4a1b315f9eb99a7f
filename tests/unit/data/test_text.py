import numpy as np
import pandas as pd
import pytest

from recsys import sql
from recsys.config import FeatureConfig
from recsys.data import text
from recsys.data.features import build_features, open_store
from recsys.data.ingest import ingest_frame


class CountingEncoder:
    """Deterministic stand-in that records what it was asked to encode."""

    name = "counting"
    dim = 4

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen += texts
        return np.array([[len(t), t.count("a"), 1.0, 0.0] for t in texts], dtype=np.float32)


def _items(titles):
    return pd.DataFrame({"item_id": [f"i{i}" for i in range(len(titles))], "title": titles,
                         "category": "c", "description": None})


def test_text_is_encoded_once_and_again_only_when_it_changes(paths):
    ingest_frame(_items(["alpha", "beta", None]), "items", kind="items", data_paths=paths)
    build_features(paths, FeatureConfig(text_encoder="none"))
    enc = CountingEncoder()
    with open_store(paths) as con:
        assert text.refresh_text_embeddings(con, enc) == 3  # "c" alone is text too
        assert text.refresh_text_embeddings(con, enc) == 0
    ingest_frame(_items(["alpha", "gamma", None]), "items2", kind="items", data_paths=paths)
    build_features(paths, FeatureConfig(text_encoder="none"))
    with open_store(paths) as con:
        assert text.refresh_text_embeddings(con, enc) == 1
        assert enc.seen[-1] == "gamma | c"
        m = text.text_matrix(con, "counting", n_items=3)
    assert m.shape == (4, 4) and (m[0] == 0).all()
    assert m[2, 0] == len("gamma | c")


def test_default_encoder_is_offline_wordllama_and_similar_texts_are_close():
    enc = text.load_encoder("wordllama")
    v = enc.encode(["trail running shoe", "marathon running shoes", "espresso coffee grinder"])
    assert v.shape == (3, enc.dim)
    assert v[0] @ v[1] > v[0] @ v[2]


def test_unknown_encoder_is_named():
    with pytest.raises(ValueError, match="unknown text encoder 'bert'"):
        text.load_encoder("bert")
    assert text.load_encoder("none") is None


def test_features_store_embeddings_of_the_configured_encoder(paths):
    ingest_frame(_items(["alpha", "beta"]), "items", kind="items", data_paths=paths)
    build_features(paths)
    with open_store(paths) as con:
        rows = sql.query(con, "text_embeddings", encoder="wordllama-256").fetchall()
    assert len(rows) == 2 and len(rows[0][1]) == 256
