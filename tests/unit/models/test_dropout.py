import pytest
import torch
import torch.nn.functional as F

from recsys.models.blocks import CausalSelfAttention, attention_mask, attention_with_dropout
from recsys.models.dropout import Dropout, fast_dropout, random_15bit


def test_random_numbers_use_all_15_bits_uniformly():
    r = random_15bit((400_000,), torch.device("cpu"))
    assert r.dtype == torch.int16 and int(r.min()) >= 0 and int(r.max()) < 2 ** 15
    bits = torch.stack([(r >> b) & 1 for b in range(15)]).float().mean(1)
    # Every bit, the top one of each 63-bit draw included, is a fair coin (4 sigma = 0.003).
    assert torch.allclose(bits, torch.full_like(bits, 0.5), atol=0.004), bits
    quarters = torch.bincount((r >> 13).long(), minlength=4).float() / len(r)
    assert torch.allclose(quarters, torch.full((4,), 0.25), atol=0.004)


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_drops_at_rate_p_and_keeps_the_mean(p, dtype):
    torch.manual_seed(0)
    x = torch.ones(200_000, dtype=dtype)
    y = fast_dropout(x, p)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - p) < 0.005
    assert abs(y.float().mean().item() - 1.0) < 0.01
    kept = y[y != 0]
    assert torch.allclose(kept.float(), torch.full_like(kept.float(), 1 / (1 - p)), rtol=1e-3)


def test_identity_when_off_and_zero_at_p_one():
    x = torch.randn(8, 5)
    assert fast_dropout(x, 0.3, training=False) is x
    assert fast_dropout(x, 0.0) is x
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))
    layer = Dropout(0.3).eval()
    assert layer(x) is x


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    y = fast_dropout(x, 0.25)
    y.sum().backward()
    expected = (y.detach() != 0).float() / 0.75
    assert torch.allclose(x.grad, expected, rtol=1e-4)


def test_seeded_masks_repeat():
    torch.manual_seed(3)
    a = fast_dropout(torch.ones(1000), 0.2)
    torch.manual_seed(3)
    b = fast_dropout(torch.ones(1000), 0.2)
    assert torch.equal(a, b)


@pytest.mark.parametrize("padded", [False, True])
def test_written_out_attention_matches_sdpa_without_dropout(padded):
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 6, 4) for _ in range(3))
    valid = torch.ones(3, 6, dtype=torch.bool)
    if padded:
        valid[0, :2] = False
    mask = attention_mask(valid)
    ours = attention_with_dropout(q, k, v, mask, 0.0)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_attention_dropout_stays_causal():
    """A dropped weight may remove a past item, never add a future one."""
    torch.manual_seed(0)
    attn = CausalSelfAttention(8, 2, dropout=0.5).train()
    x = torch.randn(2, 5, 8, requires_grad=True)
    attn(x, None)[:, 2].sum().backward()
    assert x.grad[:, 3:].abs().sum() == 0
