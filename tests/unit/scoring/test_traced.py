"""The traced user tower answers exactly as the eager one, whatever the batch's shape."""

from __future__ import annotations

import pytest
import torch

from recsys.config import BlockLayout, ModelConfig
from recsys.models.seqrec import SeqRec
from recsys.scoring import traced
from recsys.scoring.scorer import Scorer


def _net(**cfg) -> SeqRec:
    torch.manual_seed(0)
    return SeqRec(ModelConfig(d_model=16, n_heads=2, max_len=12, **cfg), 300).eval()


@pytest.mark.parametrize("cfg", [{}, {"use_event_types": False}, {"n_blocks": 3},
                                 {"block_layout": BlockLayout.sasrec}])
def test_the_graph_matches_the_eager_tower_for_any_batch(cfg):
    net = _net(**cfg)
    vectors = net.items().detach()
    graph = traced.trace_user_tower(net, vectors)
    assert graph is not None
    gen = torch.Generator().manual_seed(1)
    for batch, length in [(1, 1), (1, 12), (3, 7), (9, 12), (2, 5)]:
        items = torch.randint(1, 301, (batch, length), generator=gen)
        types = torch.randint(1, 6, (batch, length), generator=gen)
        for row in range(0, batch, 2):  # every other row left-padded, the rest full
            pad = int(torch.randint(0, length, (1,), generator=gen))
            items[row, :pad], types[row, :pad] = 0, 0
        with torch.no_grad():
            want = net.user_vectors(items, types, vectors)
        torch.testing.assert_close(graph(items, types), want, atol=1e-5, rtol=1e-4)


def test_a_tower_the_tracer_cannot_follow_is_served_eagerly(monkeypatch, caplog):
    def fail(*args, **kwargs):
        raise RuntimeError("cannot trace this")

    monkeypatch.setattr(torch.jit, "trace", fail)
    net = _net()
    assert traced.trace_user_tower(net, net.items().detach()) is None
    assert "serving it eagerly: cannot trace this" in caplog.text
    scorer = Scorer(net, [f"i{n}" for n in range(1, 301)])
    assert scorer.traced is None
    ids, _ = scorer.recommend([["i1", "i2"]], k=5)
    assert ids.shape == (1, 5)


def test_the_scorer_serves_the_graph_and_answers_as_without_it():
    net = _net()
    ids = [f"i{n}" for n in range(1, 301)]
    fast, eager = Scorer(net, ids), Scorer(net, ids, trace=False)
    assert fast.traced is not None and eager.traced is None
    histories = [["i3", "i9", "i27"], ["i5"], [f"i{n}" for n in range(40, 60)]]
    got, got_scores = fast.recommend(histories, k=10, exclude_seen=True)
    want, want_scores = eager.recommend(histories, k=10, exclude_seen=True)
    assert (got == want).all()
    torch.testing.assert_close(torch.from_numpy(got_scores), torch.from_numpy(want_scores),
                               atol=1e-5, rtol=1e-4)
