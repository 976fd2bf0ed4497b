"""What a search or scaling experiment leaves behind: a printed table, CSV, JSON, PNG."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..fileio import atomic_write_bytes
from ..tables import text_table
from .grid import Candidate


def _ranked(trained: list[Candidate]) -> list[Candidate]:
    def order(c: Candidate):
        top1 = c.result.get("top1")
        return (top1 is None, -(top1 or 0.0), c.macs)

    return sorted(trained, key=order)


def ranked_table(trained: list[Candidate]) -> str:
    rows = []
    for i, c in enumerate(_ranked(trained), start=1):
        top1 = c.result.get("top1")
        rows.append([str(i), f"{c.point.alpha:g}", f"{c.point.beta:g}", f"{c.point.gamma:g}",
                     f"{c.point.formula:.3f}", str(c.resolution), f"{c.macs / 1e6:.2f}",
                     f"{c.ratio:.3f}", f"{c.off_target * 100:+.1f}",
                     "-" if top1 is None else f"{top1:.2f}", c.result.get("state", "todo")])
    return text_table(["rank", "alpha", "beta", "gamma", "a*b^2*g^2", "res", "MMACs", "ratio",
                       "off %", "top-1 %", "state"], rows)


CSV_FIELDS = ["key", "alpha", "beta", "gamma", "formula", "resolution", "blocks", "macs", "ratio",
              "target", "off_target_pct", "in_tolerance", "same_network_as", "state", "trial",
              "top1", "error"]


def candidates_csv(measured: list[Candidate], tolerance: float) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for c in measured:
        inside = abs(c.off_target) <= tolerance
        r = c.result
        w.writerow({
            "key": c.key, "alpha": c.point.alpha, "beta": c.point.beta, "gamma": c.point.gamma,
            "formula": round(c.point.formula, 6), "resolution": c.resolution,
            "blocks": c.spec.num_blocks, "macs": c.macs, "ratio": round(c.ratio, 6),
            "target": c.target, "off_target_pct": round(c.off_target * 100, 3),
            "in_tolerance": inside, "same_network_as": c.same_as,
            "state": r.get("state", "todo") if inside else "outside tolerance",
            "trial": "" if r.get("trial") is None else r["trial"],
            "top1": "" if r.get("top1") is None else r["top1"], "error": r.get("error", ""),
        })
    return buf.getvalue().encode()


def plot_search(path: Path, trained: list[Candidate], best: Candidate | None, base_macs: int,
                tolerance: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [c for c in trained if c.result.get("top1") is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    if trained:
        target = trained[0].target * base_macs / 1e6
        ax.axvspan(target * (1 - tolerance), target * (1 + tolerance), color="0.92",
                   label=f"2^phi x base MACs +/- {tolerance:.0%}")
        ax.axvline(target, color="0.6", lw=1)
    if done:
        sc = ax.scatter([c.macs / 1e6 for c in done], [c.result["top1"] for c in done], s=28,
                        c=[c.point.alpha for c in done], cmap="viridis", zorder=3)
        fig.colorbar(sc, ax=ax, label="alpha (depth base)")
        for c in done:
            ax.annotate(f"{c.point.alpha:g}/{c.point.beta:g}/{c.point.gamma:g}",
                        (c.macs / 1e6, c.result["top1"]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
    if best is not None:
        ax.scatter([best.macs / 1e6], [best.result["top1"]], s=120, facecolors="none",
                   edgecolors="red", zorder=4, label=f"best a={best.point.alpha:g} "
                   f"b={best.point.beta:g} g={best.point.gamma:g}")
    ax.set_xlabel("measured MMACs per image")
    ax.set_ylabel("val top-1 % (proxy training)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_search_outputs(out: Path, cfg, base, base_macs: int, measured: list[Candidate],
                         trained: list[Candidate], best: Candidate | None, complete: bool,
                         study_name: str, storage: str) -> dict[str, Path]:
    files = {"csv": out / "candidates.csv", "plot": out / "accuracy_vs_macs.png"}
    atomic_write_bytes(files["csv"], candidates_csv(measured, cfg.tolerance))
    title = (f"{base.name} @ {base.size}px, phi={cfg.phi:g}: "
             f"{len(trained)} candidates, {cfg.proxy.epochs} proxy epoch(s)")
    plot_search(files["plot"], trained, best, base_macs, cfg.tolerance, title)
    if best is not None:
        files["best"] = out / "best.json"
        atomic_write_bytes(files["best"], json.dumps({
            "alpha": best.point.alpha, "beta": best.point.beta, "gamma": best.point.gamma,
            "accuracy": best.result["top1"], "macs": best.macs, "ratio": best.ratio,
            "target_ratio": best.target, "resolution": best.resolution, "phi": cfg.phi,
            "base": cfg.base, "base_phi": cfg.base_phi, "base_size": base.size,
            "base_macs": base_macs, "trial": best.result.get("trial"),
            "candidates_done": sum(c.result.get("state") == "done" for c in trained),
            "candidates": len(trained), "complete": complete, "study": study_name,
            "storage": storage,
        }, indent=1).encode())
    return files
