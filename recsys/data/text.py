"""Item text embeddings from a pretrained encoder, cached in the feature store.

Text is what lets the item tower place an item nobody has clicked yet: its title,
category and description are embedded once (re-encoded only when they change) and the
model projects that vector next to the id embedding.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import duckdb
import numpy as np
import pyarrow as pa

from recsys import sql

log = logging.getLogger(__name__)


class TextEncoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


class WordLlamaEncoder:
    """Offline default: wordllama ships its weights and tokenizer inside its wheel."""

    def __init__(self, dim: int = 256):
        import wordllama
        from wordllama import WordLlama

        # The stock loader looks in the wrong folder and tries to download; point it at the
        # files in the wheel and forbid downloads, so this works with no network at all.
        self._wl = WordLlama.load(
            cache_dir=Path(wordllama.__file__).parent, disable_download=True, dim=dim
        )
        self.name = f"wordllama-{dim}"
        self.dim = dim

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._wl.embed(texts, norm=True), dtype=np.float32)


class SentenceTransformerEncoder:
    """Optional backend (``pip install recsys[st]``); the model must be in the local cache."""

    def __init__(self, model: str):
        from sentence_transformers import SentenceTransformer

        self._st = SentenceTransformer(model)
        self.name = f"sentence-transformers:{model}"
        self.dim = int(self._st.get_sentence_embedding_dimension())

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(
            self._st.encode(texts, normalize_embeddings=True, batch_size=256), dtype=np.float32
        )


def load_encoder(spec: str) -> TextEncoder | None:
    """Encoder named by config: ``wordllama``, ``sentence-transformers:<model>`` or ``none``."""
    if spec == "none":
        return None
    if spec == "wordllama":
        return WordLlamaEncoder()
    if spec.startswith("sentence-transformers:"):
        return SentenceTransformerEncoder(spec.split(":", 1)[1])
    raise ValueError(
        f"unknown text encoder {spec!r}: use 'wordllama', 'sentence-transformers:<model>' or 'none'"
    )


def refresh_text_embeddings(con: duckdb.DuckDBPyConnection, encoder: TextEncoder,
                            batch: int = 8192) -> int:
    """Embed items whose text is new or changed; returns how many were encoded."""
    pending = sql.query(con, "item_texts_pending", encoder=encoder.name).to_arrow_table()
    n = pending.num_rows
    texts = pending["text"].to_pylist()
    for start in range(0, n, batch):
        vectors = encoder.encode(texts[start:start + batch])
        chunk = pa.table({
            "item_idx": pending["item_idx"][start:start + batch],
            "text_hash": pending["text_hash"][start:start + batch],
            "encoder": pa.array([encoder.name] * len(vectors)),
            "embedding": pa.array(list(vectors), type=pa.list_(pa.float32())),
        })
        con.register("new_text_embeddings", chunk)
        try:
            sql.run(con, "item_text_embeddings_upsert")
        finally:
            con.unregister("new_text_embeddings")
    if n:
        log.info("encoded the text of %d items with %s", n, encoder.name)
    return n


def text_matrix(con: duckdb.DuckDBPyConnection, encoder_name: str, n_items: int) -> np.ndarray:
    """Dense ``(n_items + 1, dim)`` matrix by item index; rows without text (and padding) are 0."""
    table = sql.query(con, "text_embeddings", encoder=encoder_name).to_arrow_table()
    if table.num_rows == 0:
        return np.zeros((n_items + 1, 0), dtype=np.float32)
    emb = table["embedding"].combine_chunks()
    dim = len(emb[0])
    values = emb.flatten().to_numpy().astype(np.float32).reshape(-1, dim)
    out = np.zeros((n_items + 1, dim), dtype=np.float32)
    idx = table["item_idx"].to_numpy()
    keep = idx <= n_items
    out[idx[keep]] = values[keep]
    return out
