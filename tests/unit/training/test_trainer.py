import pytest
import torch

from recsys import precision
from recsys.config import ModelConfig, TrainConfig
from recsys.training import precision as train_precision
from recsys.training import trainer
from recsys.training.precision import TrainShape
from recsys.training.trainer import precision_figures, resolve_precision

SMALL = TrainShape(ModelConfig(d_model=16, n_blocks=1, n_heads=1, max_len=8, use_text=False), 40)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path))
    return tmp_path


def _measured(monkeypatch, fp32_ms: float, bf16_ms: float) -> list[TrainShape]:
    """Make the CPU probe report these figures; the shapes it was asked about."""
    asked: list[TrainShape] = []

    def fake(shape, folder=None):
        asked.append(shape)
        return precision.Probe(shape.name, fp32_ms, bf16_ms, 2, 0.0, "now")

    monkeypatch.setattr(trainer, "probe_training", fake)
    return asked


@pytest.mark.parametrize("fp32_ms, bf16_ms, expected", [
    (160.0, 100.0, "bf16-mixed"),  # 1.6x, as measured on an AVX-512 BF16 EPYC without AMX
    (110.0, 100.0, "32-true"),     # below the 1.15x margin
    (12.0, 100.0, "32-true"),      # AVX2 only: emulated bf16
])
@pytest.mark.parametrize("amx", [True, False])
def test_auto_precision_on_cpu_follows_the_measurement_not_the_flags(monkeypatch, no_cuda, amx,
                                                                      fp32_ms, bf16_ms, expected):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    asked = _measured(monkeypatch, fp32_ms, bf16_ms)
    assert resolve_precision("auto", "auto", SMALL) == expected
    assert resolve_precision("auto", "cpu", SMALL) == expected
    assert asked == [SMALL, SMALL]


def test_the_probe_times_the_model_it_is_given(no_cuda, cache, monkeypatch):
    """A real probe of a small shape: cached per shape, read back, retaken for a new torch."""
    made: list[TrainShape] = []
    real_steps = train_precision._steps

    def spy(shape):
        made.append(shape)
        return real_steps(shape)

    monkeypatch.setattr(train_precision, "_steps", spy)
    # A quiet machine, whatever the real load: figures from a busy one are retaken (test_precision).
    monkeypatch.setattr(precision.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    state = torch.get_rng_state()
    chosen = resolve_precision("auto", "cpu", SMALL)
    assert torch.equal(torch.get_rng_state(), state)  # a seeded run is not moved by the probe
    assert chosen in ("32-true", "bf16-mixed") and made == [SMALL]
    (probe,) = precision.cached(cache).values()
    assert probe.name.startswith("train d=16 blocks=1 heads=1 len=8 items=64 text=0")
    assert chosen == ("bf16-mixed" if probe.bf16 else "32-true")
    assert probe.fp32_ms > 0 and probe.bf16_ms > 0 and probe.pairs >= 1

    assert resolve_precision("auto", "cpu", SMALL) == chosen and made == [SMALL]
    # A catalogue that grew within the same power of two finds the same figures.
    assert resolve_precision("auto", "cpu", TrainShape(SMALL.model, 60)) == chosen
    assert made == [SMALL]
    figures = precision_figures(TrainConfig(accelerator="cpu"), SMALL)
    assert figures == {"precision_probe/fp32_ms": probe.fp32_ms,
                       "precision_probe/bf16_ms": probe.bf16_ms,
                       "precision_probe/bf16_speedup": probe.speedup}
    assert precision_figures(TrainConfig(precision="32-true"), SMALL) == {}

    machine = precision.machine()
    monkeypatch.setattr(precision, "machine", lambda: {**machine, "torch": "0.0.1"})
    resolve_precision("auto", "cpu", SMALL)
    assert made == [SMALL, SMALL]


def test_auto_precision_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", "auto") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", "gpu") == "16-mixed"


def test_auto_precision_on_cuda_is_not_measured(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    asked = _measured(monkeypatch, 100.0, 100.0)
    assert resolve_precision("auto", "auto", SMALL) == "bf16-mixed"
    assert precision_figures(TrainConfig(), SMALL) == {}
    assert asked == []


def test_auto_precision_asked_for_cpu_ignores_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    asked = _measured(monkeypatch, 100.0, 100.0)
    assert resolve_precision("auto", "cpu", SMALL) == "32-true" and asked == [SMALL]


def test_explicit_precision_is_kept(monkeypatch):
    asked = _measured(monkeypatch, 100.0, 100.0)
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert resolve_precision("32", "auto") == "32"
    assert asked == []
