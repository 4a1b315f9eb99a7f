"""Batches for training: length-bucketed so almost no work is spent on padding."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from recsys.data.containers import EvalSet, trim
from recsys.data.sequences import TrainingData


class SequenceRows(Dataset):
    """Rows of left-padded sequences; a batch is fetched with one gather and trimmed."""

    def __init__(self, items: torch.Tensor, types: torch.Tensor):
        self.items, self.types = items, types

    def __len__(self) -> int:
        return len(self.items)

    def __getitems__(self, index: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(index)
        items, types = trim(self.items[idx], self.types[idx])
        return {"items": items, "types": types}


class EvalRows(Dataset):
    def __init__(self, data: EvalSet):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitems__(self, index: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(index)
        items, types = trim(self.data.items[idx], self.data.types[idx])
        return {"items": items, "types": types, "target": self.data.target[idx]}


def _as_is(batch):
    return batch


class BucketBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar-length sequences, the same count on every DDP rank.

    Sorting by length inside windows of ``window`` batches keeps batches random across epochs
    while cutting padding (short sequences dominate most real data) to a few percent.
    ``window=1`` gives plain random batches, whose positions all weigh the same in a step.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, window: int = 50, max_batches: int = 0):
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.rank, self.world_size, self.window = rank, world_size, window
        self.max_batches = max_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(len(self.lengths))
        span = self.batch_size * self.window
        batches = []
        for start in range(0, len(order), span):
            chunk = order[start:start + span]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        per_rank = len(batches) // self.world_size if self.world_size > 1 else len(batches)
        if self.max_batches:
            per_rank = min(per_rank, self.max_batches)
        return batches[self.rank::self.world_size][:per_rank]

    def __iter__(self):
        for batch in self._batches():
            yield batch.tolist()

    def __len__(self) -> int:
        n = -(-len(self.lengths) // self.batch_size)
        per_rank = n // self.world_size if self.world_size > 1 else n
        return min(per_rank, self.max_batches) if self.max_batches else per_rank


class SequenceDataModule(pl.LightningDataModule):
    def __init__(self, data: TrainingData, batch_size: int, seed: int, eval_batch_size: int = 512,
                 max_val_users: int = 0, max_steps_per_epoch: int = 0, num_workers: int = 0,
                 bucket_window: int = 1):
        super().__init__()
        self.bucket_window = bucket_window
        self.data = data
        self.batch_size, self.seed, self.eval_batch_size = batch_size, seed, eval_batch_size
        self.max_val_users, self.max_steps = max_val_users, max_steps_per_epoch
        self.num_workers = num_workers

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        lengths = (self.data.train_items > 0).sum(1).numpy()
        sampler = BucketBatchSampler(lengths, self.batch_size, self.seed, rank, world,
                                     window=self.bucket_window, max_batches=self.max_steps)
        return DataLoader(SequenceRows(self.data.train_items, self.data.train_types),
                          batch_sampler=sampler, collate_fn=_as_is,
                          num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        valid = self.data.valid
        if self.max_val_users and len(valid) > self.max_val_users:
            pick = np.random.default_rng(self.seed).choice(len(valid), self.max_val_users,
                                                           replace=False)
            valid = valid.subset(np.sort(pick))
        # Each rank validates its own slice of users; Lightning averages the ranks' figures.
        valid = valid.subset(np.arange(rank, len(valid), world))
        batches = [list(range(i, min(i + self.eval_batch_size, len(valid))))
                   for i in range(0, len(valid), self.eval_batch_size)]
        return DataLoader(EvalRows(valid), batch_sampler=batches, collate_fn=_as_is)
