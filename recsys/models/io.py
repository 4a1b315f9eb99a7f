"""Save and load the network as safetensors weights + a JSON config: no pickled modules."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from recsys.config import ModelConfig
from recsys.models.seqrec import SeqRec

WEIGHTS = "model.safetensors"
CONFIG = "model.json"
ITEM_IDS = "item_ids.json"


def save(net: SeqRec, folder: Path, item_ids: list[str], extra: dict | None = None) -> Path:
    """Write weights, config and the index -> item id map that gives indices their meaning."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    meta = {"model": net.cfg.model_dump(), "n_items": net.n_items,
            "text_dim": int(net.items.text.shape[1]), **(extra or {})}
    (folder / CONFIG).write_text(json.dumps(meta, indent=2, default=str))
    (folder / ITEM_IDS).write_text(json.dumps(item_ids))
    return folder


def load(folder: Path, device: str | torch.device = "cpu") -> tuple[SeqRec, list[str], dict]:
    """The network (eval mode), its item ids and the saved metadata."""
    meta = json.loads((folder / CONFIG).read_text())
    cfg = ModelConfig(**meta["model"])
    text = torch.zeros(meta["n_items"] + 1, meta["text_dim"]) if meta["text_dim"] else None
    net = SeqRec(cfg, meta["n_items"], text)
    net.load_state_dict(load_file(str(folder / WEIGHTS), device=str(device)))
    item_ids = json.loads((folder / ITEM_IDS).read_text())
    return net.to(device).eval(), item_ids, meta
