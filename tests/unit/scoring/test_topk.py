import torch

from recsys.scoring.topk import ItemIndex


def exact_top_k(users, vectors, k, banned=None, exclude=None):
    scores = users @ vectors.T
    scores[:, 0] = float("-inf")
    if banned is not None:
        scores[:, banned] = float("-inf")
    if exclude is not None:
        scores.scatter_(1, exclude, float("-inf"))
    return scores.topk(k, dim=1)


def test_two_stage_matches_the_exact_ranking():
    torch.manual_seed(0)
    vectors = torch.randn(20_001, 64)
    users = torch.randn(64, 64)
    items, scores = ItemIndex(vectors).top_k(users, 10)
    truth = exact_top_k(users, vectors, 10)
    recall = sum(len(set(a.tolist()) & set(b.tolist()))
                 for a, b in zip(items, truth.indices, strict=True)) / truth.indices.numel()
    assert recall >= 0.99
    # Returned scores are the fp32 ones, best first.
    assert torch.allclose(scores, (users[:, None] * vectors[items]).sum(-1), atol=1e-4)
    assert (scores[:, :-1] >= scores[:, 1:]).all()


def test_banned_excluded_and_padding_never_recommended():
    torch.manual_seed(1)
    vectors = torch.randn(101, 8)
    vectors[0] = 100.0  # padding with a huge score must still never appear
    banned = torch.zeros(101, dtype=torch.bool)
    banned[1:50] = True
    users = torch.randn(5, 8)
    exclude = torch.tensor([[0, 0, 60, 61, 3]] * 5)  # padding and a banned item in the mask
    items, scores = ItemIndex(vectors, banned).top_k(users, 10, exclude)
    assert (items >= 50).all() and not torch.isin(items, torch.tensor([60, 61])).any()
    truth = exact_top_k(users, vectors, 10, banned, exclude)
    assert torch.equal(items, truth.indices)


def test_fewer_items_than_k_ends_in_minus_infinity():
    vectors = torch.randn(4, 8)  # three real items
    items, scores = ItemIndex(vectors).top_k(torch.randn(2, 8), 5, torch.tensor([[1], [0]]))
    assert items.shape == (2, 3)
    assert torch.isinf(scores[0, -1]) and torch.isfinite(scores[1]).all()
    assert set(items[1].tolist()) == {1, 2, 3}
