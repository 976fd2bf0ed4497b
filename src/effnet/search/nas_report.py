"""What a NAS leaves behind: the ranked table (printed and CSV), the Pareto front (accuracy vs
step time vs params) as a PNG, best.json (a bare spec: `effnet train --model best.json`) and
nas.json (the search's settings and the best candidate's numbers)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..arch.config import spec_dict
from ..arch.preprocess import Preprocess
from ..arch.spec import BLOCK_KINDS
from ..fileio import atomic_write_bytes
from ..tables import text_table


def stage_code(spec) -> str:
    """A compact per-stage summary: block letter (BlockKind.short), kernel, expansion, layers,
    +se; e.g. F3e1x2."""
    parts = []
    for s in spec.stages:
        code = f"{BLOCK_KINDS[s.block].short}{s.kernel}e{s.expand:g}x{s.repeats}"
        parts.append(code + ("se" if s.se else ""))
    return " ".join(parts)


def pareto(points: list[tuple[float, float, float]]) -> list[bool]:
    """Which (accuracy, step time, params) points no other point beats or equals in all three
    while beating in one (higher accuracy, lower time, fewer params)."""
    def dominates(a, b):
        return (a[0] >= b[0] and a[1] <= b[1] and a[2] <= b[2]) and a != b

    return [not any(dominates(q, p) for q in points) for p in points]


def _front(trained) -> list[bool]:
    return pareto([(c.attrs["top1"], c.attrs["step_s"], c.attrs["params"]) for c in trained])


HEADER = ["rank", "key", "stages (F/M kernel e expansion x layers)", "top-1 %", "step ms", "S",
          "params", "P", "MMACs", "reward", "mnas reward", "pareto"]


def _row(i, c, front) -> list[str]:
    a = c.attrs
    return [str(i), c.key, stage_code(c.spec), f"{a['top1']:.2f}", f"{a['step_s'] * 1e3:.1f}",
            f"{a['S']:.3f}", f"{a['params'] / 1e6:.3f}M", f"{a['P']:.3f}", f"{a['macs'] / 1e6:.2f}",
            f"{a['reward']:.4f}", f"{a['reward_mnas']:.4f}", "*" if front else ""]


def results_table(trained) -> str:
    front = _front(trained)
    return text_table(HEADER, [_row(i, c, f) for i, (c, f) in
                               enumerate(zip(trained, front, strict=True), start=1)], left=3)


def results_csv(trained) -> bytes:
    buf = io.StringIO()
    fields = ["rank", "key", "name", "trial", "stages", "top1", "step_s", "S", "params", "P",
              "macs", "reward", "reward_v2", "reward_mnas", "pareto", "run_dir"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for i, (c, f) in enumerate(zip(trained, _front(trained), strict=True), start=1):
        a = c.attrs
        w.writerow({"rank": i, "key": c.key, "name": c.spec.name, "trial": c.trial,
                    "stages": stage_code(c.spec), "pareto": f,
                    **{k: a.get(k, "") for k in fields if k in a}})
    return buf.getvalue().encode()


def plot_front(path: Path, trained, best, base: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = _front(trained)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110, sharey=True)
    for ax, x, label in ((axes[0], "S", "train-step time / backbone's"),
                         (axes[1], "P", "params / backbone's")):
        xs = [c.attrs[x] for c in trained]
        ys = [c.attrs["top1"] for c in trained]
        other = "P" if x == "S" else "S"
        sc = ax.scatter(xs, ys, c=[c.attrs[other] for c in trained], cmap="viridis", s=26,
                        zorder=3)
        fig.colorbar(sc, ax=ax, label=f"{other} (colour)")
        on = sorted((px, py) for px, py, f in zip(xs, ys, front, strict=True) if f)
        if on:
            ax.scatter(*zip(*on, strict=True), s=70, facecolors="none", edgecolors="black",
                       zorder=4, label="Pareto front (acc, S, P)")
        if best is not None:
            ax.scatter([best.attrs[x]], [best.attrs["top1"]], s=140, marker="*", color="red",
                       zorder=5, label="best reward")
        ax.axvline(1.0, color="0.6", lw=1, label="backbone")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("val top-1 % (proxy training)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_nas_outputs(out: Path, cfg, space, preprocess: Preprocess, base: dict, trained, best,
                      complete: bool, study_name: str, storage: str) -> dict[str, Path]:
    files = {"table": out / "results.csv", "pareto": out / "pareto.png", "summary": out / "nas.json"}
    atomic_write_bytes(files["table"], results_csv(trained))
    title = (f"NAS space {space.name} on {space.base.name} @ {preprocess.eval_size}px: "
             f"{len(trained)} candidates, {cfg.proxy.epochs} proxy epoch(s)")
    plot_front(files["pareto"], trained, best, base, title)
    summary = {"space": space.name, "base": space.base.name, "space_size": space.size,
               "objective": vars(cfg.objective), "sampler": cfg.sampler, "trials": cfg.trials,
               "trained": len(trained), "complete": complete, "study": study_name,
               "storage": storage, "base_stats": base,
               "best": None if best is None else {"key": best.key, "trial": best.trial,
                                                  **{k: v for k, v in best.attrs.items()}}}
    atomic_write_bytes(files["summary"], json.dumps(summary, indent=1).encode())
    if best is not None:
        files["best"] = out / "best.json"
        # the searched network with the preprocessing it was searched at (a config file form)
        atomic_write_bytes(files["best"], json.dumps(spec_dict(best.spec, preprocess),
                                                     indent=1).encode())
    return files
