import pytest
import torch

from recsys.models.losses import (
    full_softmax_loss,
    proposal_log_q,
    reference_softmax_loss,
    sampled_softmax_loss,
)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("chunk", [7, 64, 1000])
def test_chunked_softmax_matches_the_textbook_loss_and_gradients(chunk, smoothing):
    torch.manual_seed(0)
    h = torch.randn(100, 8, requires_grad=True)
    v = torch.randn(30, 8, requires_grad=True)
    t = torch.randint(1, 30, (100,))
    loss = full_softmax_loss(h, v, t, chunk=chunk, label_smoothing=smoothing)
    (2 * loss).backward()
    gh, gv = h.grad.clone(), v.grad.clone()
    h.grad = v.grad = None
    ref = reference_softmax_loss(h, v, t, label_smoothing=smoothing)
    (2 * ref).backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(gh, h.grad)
    torch.testing.assert_close(gv, v.grad)
    assert gv[0].abs().sum() == 0  # padding gets no gradient


def test_label_smoothing_outside_0_1_is_refused():
    h, v, t = torch.randn(4, 8), torch.randn(10, 8), torch.randint(1, 10, (4,))
    with pytest.raises(ValueError, match="label_smoothing"):
        full_softmax_loss(h, v, t, label_smoothing=1.0)


def test_label_smoothing_raises_the_loss_of_a_confident_model():
    # A model sure of the target pays for the mass smoothing puts on every other item.
    v = torch.eye(5, 5) * 20
    h, t = v[[1, 2, 3]], torch.tensor([1, 2, 3])
    plain, smoothed = (full_softmax_loss(h, v, t, label_smoothing=s).item() for s in (0.0, 0.1))
    assert plain < 1e-3 < smoothed


def test_chunked_softmax_under_bf16_autocast_is_close():
    torch.manual_seed(0)
    h, v = torch.randn(50, 16), torch.randn(40, 16)
    t = torch.randint(1, 40, (50,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = full_softmax_loss(h, v, t)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(reference_softmax_loss(h, v, t).item(), rel=2e-2)


def test_sampled_softmax_is_finite_trains_and_masks_accidental_hits():
    torch.manual_seed(0)
    v = torch.nn.Parameter(torch.randn(20, 8))
    h = torch.nn.Parameter(torch.randn(64, 8))
    t = torch.randint(1, 20, (64,))
    log_q = proposal_log_q(torch.arange(20.0))
    assert log_q[0] == float("-inf") and torch.isclose(log_q[1:].exp().sum(), torch.tensor(1.0))
    opt = torch.optim.SGD([v, h], lr=0.5)
    first = None
    for _ in range(50):
        loss = sampled_softmax_loss(h, v, t, log_q, n_negatives=16)
        assert torch.isfinite(loss)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 2
    # Every sampled item equals the target: only the positive is left, the loss is zero.
    one = torch.full((20,), float("-inf"))
    one[3] = 0.0
    zero = sampled_softmax_loss(h[:4], v, torch.full((4,), 3), one, n_negatives=8)
    assert zero.item() == pytest.approx(0.0, abs=1e-6)
