import numpy as np
import pyarrow as pa
import torch

from recsys.models.baselines import ItemCF, Popularity


def test_popularity_ranks_by_count_for_everyone():
    pop = Popularity(np.array([0, 5, 1, 9.0]))
    s = pop.score(torch.tensor([[1, 2], [0, 3]]))
    assert s.argmax(1).tolist() == [3, 3] and torch.isinf(s[:, 0]).all()


def test_item_cf_recommends_what_followed_the_last_item():
    # 1 -> 2 in every sequence, 3 -> 4 in every sequence.
    seqs = pa.table({"user_idx": [0, 1, 2, 3], "history": [[1, 2], [1, 2], [3, 4], [3, 4, 1, 2]]})
    cf = ItemCF.fit(seqs, n_items=5, popularity=np.array([0, 3, 3, 2, 2, 0.0]), window=1)
    s = cf.score(torch.tensor([[0, 1], [0, 3], [0, 5]]))
    assert s[0].argmax() == 2 and s[1].argmax() == 4
    # No co-occurrence for item 5: fall back to popularity.
    assert s[2].argmax() in (1, 2)
