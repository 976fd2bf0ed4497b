"""PNG curves of a run (loss, accuracy, learning rate), drawn off-screen with matplotlib's Agg."""

from __future__ import annotations

from pathlib import Path

from ..rundir import RunDir


def save_plots(run: RunDir, history: list[dict], lr_curve: list[float],
               steps_per_epoch: int) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    if not history:
        return []
    epochs = [r["epoch"] for r in history]
    out = []

    def series(key):
        pts = [(e, r[key]) for e, r in zip(epochs, history, strict=True) if r.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    def finish(fig, ax, kind, ylabel, xlabel="epoch"):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        fig.tight_layout()
        path = run.plot(kind)
        run.write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
        plt.close(fig)
        out.append(path)

    curves = {"loss": ("loss", (("train_loss", "train"), ("val_loss", "val"),
                                ("ema_val_loss", "val (EMA)"))),
              "accuracy": ("val accuracy (%)", (("top1", "top-1"), ("ema_top1", "top-1 (EMA)"),
                                                ("top5", "top-5")))}
    for kind, (ylabel, keys) in curves.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for key, label in keys:
            x, y = series(key)
            if x:
                ax.plot(x, y, marker="o", label=label)
        finish(fig, ax, kind, ylabel)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([s / steps_per_epoch for s in range(len(lr_curve))], lr_curve)
    finish(fig, ax, "lr", "learning rate")
    return out
