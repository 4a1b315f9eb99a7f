"""Save and load the network as safetensors weights + a JSON config: no pickled modules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from recsys.config import ModelConfig
from recsys.data.containers import EvalSet
from recsys.models.seqrec import SeqRec

WEIGHTS = "model.safetensors"
CONFIG = "model.json"
ITEM_IDS = "item_ids.json"
GUARD = "guard.npz"


def save(net: SeqRec, folder: Path, item_ids: list[str], extra: dict | None = None,
         guard: EvalSet | None = None) -> Path:
    """Write weights, config, item ids and the guard set.

    The item ids give indices their meaning; the guard set is what the promotion gate checks
    every descendant of this model against.

    The frozen text embeddings are stored in half precision: they are half of a model's bytes,
    and a version is registered every minute.
    """
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    if "items.text" in state:
        state["items.text"] = state["items.text"].half()
    save_file(state, str(folder / WEIGHTS))
    meta = {"model": net.cfg.model_dump(), "n_items": net.n_items,
            "text_dim": int(net.items.text.shape[1]), **(extra or {})}
    (folder / CONFIG).write_text(json.dumps(meta, indent=2, default=str))
    (folder / ITEM_IDS).write_text(json.dumps(item_ids))
    if guard is not None:
        np.savez_compressed(folder / GUARD, items=guard.items.numpy(), types=guard.types.numpy(),
                            target=guard.target.numpy(), user_idx=guard.user_idx)
    return folder


def load_guard(folder: Path) -> EvalSet | None:
    """The guard set saved with the lineage's full retrain (None for models saved without)."""
    if not (folder / GUARD).exists():
        return None
    with np.load(folder / GUARD) as z:
        return EvalSet(torch.from_numpy(z["items"]), torch.from_numpy(z["types"]),
                       torch.from_numpy(z["target"]), z["user_idx"])


def load(folder: Path, device: str | torch.device = "cpu") -> tuple[SeqRec, list[str], dict]:
    """The network (eval mode), its item ids and the saved metadata."""
    meta = json.loads((folder / CONFIG).read_text())
    cfg = ModelConfig(**meta["model"])
    text = torch.zeros(meta["n_items"] + 1, meta["text_dim"]) if meta["text_dim"] else None
    net = SeqRec(cfg, meta["n_items"], text)
    state = load_file(str(folder / WEIGHTS), device=str(device))
    if "items.text" in state:
        state["items.text"] = state["items.text"].float()
    net.load_state_dict(state)
    item_ids = json.loads((folder / ITEM_IDS).read_text())
    return net.to(device).eval(), item_ids, meta
