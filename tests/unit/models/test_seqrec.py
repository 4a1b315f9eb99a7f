import contextlib

import pytest
import torch

from recsys.config import BlockLayout, ModelConfig
from recsys.models import io
from recsys.models.blocks import CausalSelfAttention, attention_mask
from recsys.models.seqrec import SeqRec


def _net(**kw):
    torch.manual_seed(0)
    return SeqRec(ModelConfig(d_model=16, n_heads=2, max_len=8, **kw), 30,
                  torch.randn(31, 12)).eval()


@pytest.mark.parametrize("layout", list(BlockLayout))
def test_user_vector_ignores_padding_and_positions_count_from_the_newest_item(layout):
    net = _net(block_layout=layout)
    a = torch.tensor([[0, 0, 0, 5, 6, 7]])
    b = torch.tensor([[5, 6, 7]])
    types = torch.ones_like(a)
    torch.testing.assert_close(net.user_vectors(a, types), net.user_vectors(b, types[:, 3:]))


@pytest.mark.parametrize("layout", list(BlockLayout))
def test_attention_is_causal(layout):
    net = _net(block_layout=layout)
    x = torch.tensor([[1, 2, 3, 4]])
    y = torch.tensor([[1, 2, 3, 9]])
    hx, hy = net.encode(x), net.encode(y)
    torch.testing.assert_close(hx[:, :3], hy[:, :3])
    assert not torch.allclose(hx[:, 3], hy[:, 3])


def test_attention_over_separate_keys_is_the_fused_projection_split():
    torch.manual_seed(0)
    attn = CausalSelfAttention(16, 2, 0.0).eval()
    x, keys = torch.randn(3, 5, 16), torch.randn(3, 5, 16)
    mask = attention_mask(torch.tensor([[False, True, True, True, True]] * 3))
    torch.testing.assert_close(attn(x, mask, keys=x), attn(x, mask))
    assert not torch.allclose(attn(x, mask, keys=keys), attn(x, mask))
    # The query comes from x alone: changing the keys of a later position leaves earlier
    # positions' answers unchanged (still causal).
    later = keys.clone()
    later[:, -1] += 1.0
    torch.testing.assert_close(attn(x, mask, keys=later)[:, :-1], attn(x, mask, keys=keys)[:, :-1])


def test_scores_cover_the_catalogue_and_never_padding():
    net = _net()
    s = net.score(torch.tensor([[1, 2], [0, 3]]))
    assert s.shape == (2, 31)
    assert torch.isinf(s[:, 0]).all() and torch.isfinite(s[:, 1:]).all()


def test_item_tower_uses_text_and_works_without_it():
    with_text, no_text = _net(), _net(use_text=False)
    assert with_text.items.text_proj is not None and no_text.items.text_proj is None
    assert torch.isfinite(no_text.score(torch.tensor([[1, 2]]))).sum() == 30


def test_save_and_load_round_trip(tmp_path):
    net = _net()
    io.save(net, tmp_path / "m", [f"i{i}" for i in range(1, 31)])
    loaded, ids, meta = io.load(tmp_path / "m")
    x = torch.tensor([[3, 4, 5]])
    torch.testing.assert_close(net.score(x), loaded.score(x))
    assert ids[0] == "i1" and meta["n_items"] == 30
    assert (tmp_path / "m" / io.WEIGHTS).read_bytes()[:8]  # safetensors, not a pickle


def test_init_std_sets_every_weight_and_keeps_padding_zero():
    net = _net(init_std=0.02)
    assert torch.all(net.items.id_emb.weight[0] == 0)
    for name, p in net.named_parameters():
        if p.dim() == 2:  # weight matrices and embeddings; LayerNorm and biases keep defaults
            assert abs(p.std().item() - 0.02) < 0.01, name
    assert ModelConfig().init_std == 0.02  # the default
    pytorch = _net(init_std=None).user.blocks[0].attn.qkv.weight.std().item()
    assert abs(pytorch - 0.02) > 0.01  # None keeps PyTorch's per-layer initialisation


def test_attention_dropout_zero_trains_on_the_fused_kernel_with_dropout_elsewhere(monkeypatch):
    import recsys.models.blocks as blocks

    calls = []
    monkeypatch.setattr(blocks, "attention_with_dropout",
                        lambda *a: calls.append(a[-1]) or torch.zeros(()))
    items = torch.tensor([[0, 3, 5, 2], [4, 1, 2, 6]])
    off = SeqRec(ModelConfig(d_model=16, n_heads=2, max_len=4, dropout=0.3,
                             attention_dropout=0.0, use_text=False), n_items=8)
    off.train()
    torch.manual_seed(0)
    a = off.encode(items)
    torch.manual_seed(1)
    assert not torch.equal(a, off.encode(items))  # the other dropouts still act
    assert calls == []  # never the written-out attention: SDPA's fused path
    same = SeqRec(ModelConfig(d_model=16, n_heads=2, max_len=4, dropout=0.3, use_text=False),
                  n_items=8)
    same.train()
    with contextlib.suppress(IndexError):  # the stub returns no attention output
        same.encode(items)
    assert calls and calls[0] == 0.3  # unset: the attention weights get the same dropout
