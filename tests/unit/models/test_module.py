import torch

from recsys.config import ModelConfig, TrainConfig
from recsys.models.module import SeqRecModule
from recsys.models.seqrec import SeqRec


def _module(weight_decay: float) -> SeqRecModule:
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=16, n_heads=2, max_len=8)
    return SeqRecModule(SeqRec(cfg, 30, torch.randn(31, 12)), cfg,
                        TrainConfig(weight_decay=weight_decay))


def test_weight_decay_reaches_matrices_and_embeddings_but_not_norms_or_biases():
    module = _module(0.1)
    opt = module.make_optimizer()
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    named = dict(module.named_parameters())
    assert len(decay) == len(named)  # every trainable parameter is optimised, once
    assert decay[id(named["net.items.id_emb.weight"])] == 0.1
    for name, p in named.items():
        assert decay[id(p)] == (0.1 if p.dim() >= 2 else 0.0), name


def test_decay_shrinks_an_embedding_that_gets_no_gradient():
    module = _module(0.5)
    opt = module.make_optimizer()
    emb = module.net.items.id_emb.weight
    before = emb.detach().clone()
    norms = [p for p in module.parameters() if p.dim() < 2]
    norms_before = [p.detach().clone() for p in norms]
    for p in module.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(emb.detach(), before * (1 - 0.5 * module.train_cfg.lr))
    for p, b in zip(norms, norms_before, strict=True):
        torch.testing.assert_close(p.detach(), b)
