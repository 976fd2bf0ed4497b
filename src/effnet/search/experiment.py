"""The V1 scaling experiment (Table 3, Table 7, Fig. 3/8): scale one base by depth only, width
only, resolution only and by the compound rule to the same measured FLOPs, train each with the
same proxy recipe, and compare accuracy at matched FLOPs.

Each single multiplier is solved by bisection on measured MACs (`count_macs`): rounding makes MACs
a step function of the multiplier, so the solver brackets the target between the last step below
and the first step at or above it and keeps whichever lies closer (in log ratio).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..arch.scaling import PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA, scale, scale_compound
from ..arch.spec import NetSpec
from ..errors import UserError
from ..fileio import atomic_write_bytes
from ..tables import markdown_table, text_table
from .grid import MacCounter, SearchBase
from .proxy import Proxy, train_spec

METHODS = ("depth", "width", "resolution", "compound")


@dataclass
class Scaled:
    method: str  # baseline | depth | width | resolution | compound
    multiplier: float  # d, w, r (= res / base res) or phi
    spec: NetSpec
    resolution: int
    macs: int
    ratio: float
    target: float
    result: dict = field(default_factory=dict)
    params: int = 0

    @property
    def label(self) -> str:
        if self.method == "baseline":
            return "baseline"
        sym = {"depth": "d", "width": "w", "resolution": "r", "compound": "phi"}[self.method]
        return f"{self.method} {sym}={self.multiplier:.3g}"


def _solve(f: Callable[[float], int], target: float, lo: float, hi: float, integer: bool,
           what: str) -> float:
    """The multiplier x >= lo whose f(x) (a non-decreasing step function) is closest to target."""
    grow = 0
    while f(hi) < target:
        lo, hi = hi, hi * 2
        grow += 1
        if grow > 12:
            raise UserError(f"cannot reach {target:.3g} MACs by {what} scaling")
    for _ in range(60):
        if (hi - lo <= 1) if integer else (hi - lo <= 1e-4 * hi):
            break
        mid = (lo + hi) // 2 if integer else (lo + hi) / 2
        if f(mid) >= target:
            hi = mid
        else:
            lo = mid
    below, above = f(lo), f(hi)
    if below <= 0:
        return hi
    return lo if abs(math.log(below / target)) < abs(math.log(above / target)) else hi


def matched(base: SearchBase, ratio: float, counter: MacCounter,
            coeffs: tuple[float, float, float] = (PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA)
            ) -> list[Scaled]:
    """The base scaled by each METHOD to measured MACs ~= ratio x the base's."""
    if not ratio > 1:
        raise UserError(f"--target-flops-ratio must be > 1 (got {ratio:g})")
    net, res0 = base.spec, base.size
    base_macs = counter(net, res0)
    target = ratio * base_macs
    alpha, beta, gamma = coeffs

    def by_depth(d):
        return scale(net, depth=d, depth_rounding="round", name=f"{net.name}-d{d:.3g}"), res0

    def by_width(w):
        return scale(net, width=w, name=f"{net.name}-w{w:.3g}"), res0

    def by_res(r):
        r = int(r)
        return net.with_(name=f"{net.name}-r{r}"), r

    def by_phi(phi):
        s, m = scale_compound(net, phi, alpha, beta, gamma, depth_rounding="round")
        return s.with_(name=f"{net.name}-a{alpha:g}-b{beta:g}-g{gamma:g}-phi{phi:.3g}"), \
            m.scaled_size(res0)

    makers = {"depth": (by_depth, 1.0, 2.0, False), "width": (by_width, 1.0, 2.0, False),
              "resolution": (by_res, res0, 2 * res0, True), "compound": (by_phi, 0.0, 1.0, False)}
    out = []
    for method in METHODS:
        make, lo, hi, integer = makers[method]
        x = _solve(lambda v, make=make: counter(*make(v)), target, lo, hi, integer, method)
        spec, res = make(x)
        macs = counter(spec, res)
        mult = res / res0 if method == "resolution" else x
        out.append(Scaled(method, mult, spec, res, macs, macs / base_macs, ratio))
    return out


def run_experiment(base: SearchBase, ratios: list[float], proxy: Proxy, output: Path,
                   coeffs: tuple[float, float, float] = (PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA),
                   progress: bool = True) -> tuple[list[Scaled], dict[str, Path]]:
    """Train the baseline and every method at every ratio; write CSV, markdown and the plot."""
    from tqdm import tqdm

    from ..data import load_data

    splits = load_data(proxy.data)
    splits.require_two_classes()
    counter = MacCounter(num_classes=len(splits.classes))
    res0 = base.size
    base_macs = counter(base.spec, res0)
    points = [Scaled("baseline", 1.0, base.spec, res0, base_macs, 1.0, 1.0)]
    for r in ratios:
        points += matched(base, r, counter, coeffs)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    bar = tqdm(points, desc="scaling experiment", unit="model", disable=not progress,
               dynamic_ncols=True)
    from ..tools.profile import count_params

    for p in bar:
        p.params = count_params(p.spec, num_classes=counter.num_classes)
        tag = "baseline" if p.method == "baseline" else f"{p.method}-x{p.target:g}"
        bar.set_postfix_str(tag)
        run_dir = output / "runs" / tag
        summary = train_spec(p.spec, p.resolution, proxy, run_dir, log=output / "runs" / f"{tag}.log",
                             preprocess=base.preprocess)
        p.result = {"top1": float(summary["best"]["top1"]), "run_dir": str(run_dir),
                    "train_time_s": float(summary.get("train_time_s", 0.0))}
    bar.close()
    files = write_outputs(output, base, points, proxy)
    return points, files


def _rows(points: list[Scaled]) -> tuple[list[str], list[list[str]]]:
    header = ["target x", "model", "res", "blocks", "params", "MMACs", "MACs ratio", "top-1 %"]
    rows = []
    for p in points:
        rows.append([f"{p.target:g}", p.label, str(p.resolution), str(p.spec.num_blocks),
                     f"{p.params / 1e6:.3f}M", f"{p.macs / 1e6:.2f}",
                     f"{p.ratio:.3f}", f"{p.result.get('top1', float('nan')):.2f}"])
    return header, rows


def verdict(points: list[Scaled]) -> list[str]:
    """One sentence per target ratio: did compound beat every single dimension?"""
    lines = []
    for r in sorted({p.target for p in points if p.method != "baseline"}):
        at = {p.method: p.result.get("top1") for p in points if p.target == r}
        single = {m: at[m] for m in ("depth", "width", "resolution")}
        best_single = max(single, key=lambda m: single[m])
        c = at["compound"]
        s = single[best_single]
        word = "beat" if c > s else ("tied with" if c == s else "did not beat")
        lines.append(f"at {r:g}x FLOPs compound ({c:.2f} %) {word} the best single dimension, "
                     f"{best_single} ({s:.2f} %)")
    return lines


def write_outputs(out: Path, base: SearchBase, points: list[Scaled], proxy: Proxy) -> dict[str, Path]:
    import csv
    import io

    files = {"csv": out / "scaling.csv", "markdown": out / "scaling.md",
             "plot": out / "accuracy_vs_flops.png", "json": out / "scaling.json"}
    header, rows = _rows(points)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["target_ratio", "method", "multiplier", "resolution", "blocks", "macs", "ratio",
                "top1"])
    for p in points:
        w.writerow([p.target, p.method, round(p.multiplier, 6), p.resolution, p.spec.num_blocks,
                    p.macs, round(p.ratio, 6), p.result.get("top1")])
    atomic_write_bytes(files["csv"], buf.getvalue().encode())
    md = (f"Base {base.name} at {base.size}px; proxy recipe {proxy.recipe}, "
          f"{proxy.epochs} epoch(s), data {proxy.data or 'digits'}"
          f"{f', {proxy.train_subset} train images' if proxy.train_subset else ''}.\n\n"
          + markdown_table(header, rows) + "\n\n" + "\n".join(f"- {v}" for v in verdict(points))
          + "\n")
    atomic_write_bytes(files["markdown"], md.encode())
    atomic_write_bytes(files["json"], json.dumps([{
        "target_ratio": p.target, "method": p.method, "multiplier": p.multiplier,
        "resolution": p.resolution, "macs": p.macs, "ratio": p.ratio, **p.result}
        for p in points], indent=1).encode())
    plot_experiment(files["plot"], base, points)
    return files


def print_table(points: list[Scaled]) -> str:
    header, rows = _rows(points)
    return text_table(header, rows, left=2) + "\n\n" + "\n".join(verdict(points))


def plot_experiment(path: Path, base: SearchBase, points: list[Scaled]) -> None:
    """Accuracy against measured MACs, one line per method from the shared baseline (V1 Fig. 8)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    basep = next(p for p in points if p.method == "baseline")
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    styles = {"depth": ("tab:blue", "s"), "width": ("tab:orange", "^"),
              "resolution": ("tab:green", "D"), "compound": ("tab:red", "o")}
    for m in METHODS:
        pts = sorted((p for p in points if p.method == m), key=lambda p: p.macs)
        xs = [basep.macs / 1e6] + [p.macs / 1e6 for p in pts]
        ys = [basep.result["top1"]] + [p.result["top1"] for p in pts]
        color, marker = styles[m]
        ax.plot(xs, ys, marker=marker, color=color, lw=2 if m == "compound" else 1.2,
                label=f"{'compound scaling' if m == 'compound' else f'scale by {m} only'}")
    ax.set_xlabel("measured MMACs per image")
    ax.set_ylabel("val top-1 %")
    ax.set_title(f"{base.name} @ {base.size}px: scaling at matched FLOPs",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
