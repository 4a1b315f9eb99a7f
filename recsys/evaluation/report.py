"""Human-readable results: the comparison table and training curves logged with each run."""

from __future__ import annotations

from collections.abc import Mapping

COLUMNS = ("ndcg@10", "hr@10", "mrr@10", "precision@10", "ndcg@20", "hr@20", "coverage@10",
           "novelty@10", "ild@10", "arp@10")


def metrics_table(results: Mapping[str, Mapping[str, float]], title: str = "") -> str:
    """Markdown table, one row per model, the best value of each accuracy column in bold."""
    cols = [c for c in COLUMNS if any(c in r for r in results.values())]
    best = {c: max(r.get(c, float("-inf")) for r in results.values()) for c in cols
            if not c.startswith(("arp", "novelty", "ild", "coverage"))}
    lines = [f"### {title}", ""] if title else []
    lines += ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in results.items():
        cells = []
        for c in cols:
            v = r.get(c, float("nan"))
            cell = f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
            cells.append(f"**{cell}**" if c in best and v == best[c] else cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def training_curves(history: list[dict[str, float]]):
    """Figure: training loss and validation NDCG@10 / HR@10 per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.plot(epochs, [h.get("train_loss", float("nan")) for h in history], marker="o")
    ax1.set(title="training loss", xlabel="epoch")
    for key in ("val_ndcg@10", "val_hr@10"):
        ax2.plot(epochs, [h.get(key, float("nan")) for h in history], marker="o", label=key[4:])
    ax2.set(title="validation (full ranking)", xlabel="epoch")
    ax2.legend()
    fig.tight_layout()
    return fig
