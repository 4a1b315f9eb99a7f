"""The LightningModule: wires the network to its loss, optimiser and validation metrics."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from recsys import metrics as M
from recsys.config import ModelConfig, TrainConfig
from recsys.models.losses import full_softmax_loss, proposal_log_q, sampled_softmax_loss
from recsys.models.seqrec import SeqRec


class SeqRecModule(pl.LightningModule):
    """Trains every position of every sequence to predict the next item (as SASRec does)."""

    def __init__(self, net: SeqRec, model_cfg: ModelConfig, train_cfg: TrainConfig,
                 item_counts: torch.Tensor | None = None, exclude_seen: bool = False):
        super().__init__()
        self.net = net
        self.model_cfg, self.train_cfg = model_cfg, train_cfg
        self.exclude_seen = exclude_seen
        counts = item_counts if item_counts is not None else torch.ones(net.n_items + 1)
        self.register_buffer("log_q", proposal_log_q(counts), persistent=False)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Next-item loss and the number of positions it covers.

        An optional boolean ``mask`` (same shape as ``items``) says which next items are
        trained on; a fine-tune uses it to learn only the events that are new to the model.
        """
        items, types = batch["items"], batch["types"]
        inputs, targets = items[:, :-1], items[:, 1:]
        item_vectors = self.net.items()
        hidden = self.net.encode(inputs, types[:, :-1], item_vectors)
        # Only positions with a real input item carry a loss: no work is spent scoring padding.
        keep = inputs > 0
        if "mask" in batch:
            keep = keep & batch["mask"][:, 1:]
        hidden, targets = hidden[keep], targets[keep]
        if self.model_cfg.loss == "softmax":
            loss = full_softmax_loss(hidden, item_vectors, targets,
                                     label_smoothing=self.model_cfg.label_smoothing)
        else:
            loss = sampled_softmax_loss(hidden, item_vectors, targets, self.log_q,
                                        self.model_cfg.n_negatives)
        return loss, int(keep.sum())

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, n = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        scores = self.net.score(batch["items"], batch["types"])
        if self.exclude_seen:
            M.mask_seen(scores, batch["items"])
        ranks = M.target_ranks(scores, batch["target"]).cpu().numpy()
        n = len(ranks)
        for k in (10, 20):
            self.log(f"val/ndcg_at_{k}", M.ndcg(ranks, k), batch_size=n, sync_dist=True,
                     prog_bar=k == 10)
            self.log(f"val/hr_at_{k}", M.hit_rate(ranks, k), batch_size=n, sync_dist=True)

    def make_optimizer(self) -> torch.optim.Optimizer:
        # Decay pulls weight matrices and embeddings towards 0; decaying LayerNorm gains and
        # biases would only fight the normalisation (the convention of nanoGPT and others).
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2]},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.train_cfg.lr, betas=(0.9, 0.98),
                                 weight_decay=self.train_cfg.weight_decay)

    def configure_optimizers(self):
        optimiser = self.make_optimizer()
        if self.train_cfg.lr_schedule == "constant":
            return optimiser
        # The horizon is the whole run (max_epochs), known to Lightning before the first step.
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}
