"""Training losses over the catalogue: full softmax, or sampled softmax with log-Q correction."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_WORKSPACES: dict[tuple, torch.Tensor] = {}


def _workspace(name: str, shape: tuple[int, int], dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
    """A buffer of at least ``shape`` kept between steps (one per name, dtype and device)."""
    key = (name, dtype, device)
    buf = _WORKSPACES.get(key)
    if buf is None or buf.shape[0] < shape[0] or buf.shape[1] != shape[1]:
        buf = _WORKSPACES[key] = torch.empty(shape, dtype=dtype, device=device)
    return buf[:shape[0]]


class _ChunkedSoftmaxCE(torch.autograd.Function):
    """Full-catalogue cross-entropy that never holds the whole ``(N, n_items)`` logit matrix.

    Rows are processed in chunks; each chunk's softmax is turned into its gradient on the spot
    (softmax - one-hot), so the forward pass already has both gradients and backward only
    scales them. Compared with logits -> log_softmax -> nll, this saves the logits' fp32 copy,
    the log-softmax backward pass and most memory traffic: the CPU path is memory-bound.
    """

    @staticmethod
    def forward(ctx, hidden, item_vectors, targets, chunk: int, smoothing: float):
        n, dev = hidden.shape[0], hidden.device
        n_valid = item_vectors.shape[0] - 1  # every item but padding is a class
        # Under autocast the matmuls run in its dtype (bf16) and the softmax in fp32.
        dtype = (torch.get_autocast_dtype(dev.type) if torch.is_autocast_enabled(dev.type)
                 else torch.float32)
        h_all, v = hidden.detach().to(dtype), item_vectors.detach().to(dtype)
        grad_h = torch.empty(hidden.shape, dtype=dtype, device=dev)
        grad_v = torch.zeros(v.shape, dtype=torch.float32, device=dev)
        grad_v_part = torch.empty(v.shape, dtype=dtype, device=dev)
        total = torch.zeros((), dtype=torch.float32, device=dev)
        c = min(chunk, n)
        # Reused workspaces: a fresh (rows, n_items) tensor per chunk costs more in page faults
        # than the matmul itself on a CPU.
        logits = _workspace("logits", (c, v.shape[0]), dtype, dev)
        probs32 = logits if dtype == torch.float32 else _workspace("probs", (c, v.shape[0]),
                                                                   torch.float32, dev)
        for start in range(0, n, c):
            h, t = h_all[start:start + c], targets[start:start + c]
            m = len(t)
            z, p = logits[:m], probs32[:m]
            torch.mm(h, v.T, out=z)
            if p is not z:
                p.copy_(z)
            p[:, 0] = float("-inf")  # padding is never a candidate
            rows = torch.arange(m, device=dev)
            target_logit = p[rows, t]
            if smoothing:
                # The smoothed target puts smoothing / n_valid on every item: its cross-entropy
                # needs the mean logit, taken before the exponentials overwrite the logits.
                target_logit = (1.0 - smoothing) * target_logit + smoothing * p[:, 1:].mean(1)
            peak = p.amax(dim=1, keepdim=True)
            p.sub_(peak).exp_()  # shifted exponentials, in place
            norm = p.sum(dim=1, keepdim=True)
            total += (peak.squeeze(1) + norm.log().squeeze(1) - target_logit).sum()
            p.div_(norm)
            p[rows, t] -= 1.0 - smoothing  # d loss / d logits = softmax - (smoothed) one-hot
            if smoothing:
                p[:, 1:] -= smoothing / n_valid
            if p is not z:
                z.copy_(p)
            torch.mm(z, v, out=grad_h[start:start + m])
            torch.mm(z.T, h, out=grad_v_part)
            grad_v += grad_v_part
        ctx.save_for_backward(grad_h.float() / n, grad_v / n)
        ctx.dtypes = (hidden.dtype, item_vectors.dtype)
        return total / n

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_v = ctx.saved_tensors
        return (grad_h.mul(grad_out).to(ctx.dtypes[0]), grad_v.mul(grad_out).to(ctx.dtypes[1]),
                None, None, None)


def full_softmax_loss(hidden: torch.Tensor, item_vectors: torch.Tensor, targets: torch.Tensor,
                      chunk: int = 1024, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of each target against every item: ``hidden`` (N, d), ``targets`` (N,).

    The strongest known objective for SASRec (Klenitskiy & Vasilev, RecSys 2023); cost grows
    with catalogue size, which is what the sampled variant is for. ``label_smoothing`` has
    ``F.cross_entropy``'s meaning, over the items (padding is never a class).
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    return _ChunkedSoftmaxCE.apply(hidden, item_vectors, targets, chunk, float(label_smoothing))


def reference_softmax_loss(hidden: torch.Tensor, item_vectors: torch.Tensor,
                           targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """The textbook formulation, kept as the oracle the chunked one is tested against."""
    logits = hidden @ item_vectors[1:].T  # column j is item j + 1: padding is not a class
    return F.cross_entropy(logits.float(), targets - 1, label_smoothing=label_smoothing)


def sampled_softmax_loss(hidden: torch.Tensor, item_vectors: torch.Tensor, targets: torch.Tensor,
                         log_q: torch.Tensor, n_negatives: int) -> torch.Tensor:
    """Softmax over the target and ``n_negatives`` items drawn from ``exp(log_q)`` per batch.

    Subtracting each candidate's log expected count (log-Q correction) makes the sampled
    objective an unbiased stand-in for the full softmax; negatives that happen to equal the
    target are masked out.
    """
    negatives = torch.multinomial(log_q.exp(), n_negatives, replacement=True)  # (M,)
    log_expected = log_q + torch.log(torch.tensor(float(n_negatives), device=log_q.device))
    pos = (hidden * item_vectors[targets]).sum(-1, keepdim=True) - log_expected[targets, None]
    neg = hidden @ item_vectors[negatives].T - log_expected[negatives]
    neg = neg.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([pos, neg], dim=1).float()
    return F.cross_entropy(logits, torch.zeros_like(targets))


def proposal_log_q(counts: torch.Tensor, power: float = 0.75) -> torch.Tensor:
    """Log-probabilities of drawing each item as a negative: smoothed popularity^power."""
    q = (counts.float() + 1.0) ** power
    q[0] = 0.0
    return torch.log(q / q.sum())
