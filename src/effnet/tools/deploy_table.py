"""deploy.json's numbers as a table: for the terminal (`effnet deploy`) and deploy.md alike."""

from __future__ import annotations

from pathlib import Path


def table_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the files' numbers, for the terminal and deploy.md alike."""
    header = ["file", "what", "top-1 %", "vs fp32", "top-5 %", "MB"] + \
        [f"ms @ batch {b}" for b in summary["latency"]["batches"]]

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    rows = [[Path(f["file"]).name, f["name"], num(f["top1"], ".2f"), num(f["top1_vs_fp32"], "+.2f"),
             num(f["top5"], ".2f"), f"{f['mb']:.2f}"] +
            [num(f["latency_ms"].get(str(b)), ".2f") for b in summary["latency"]["batches"]]
            for f in summary["files"]]
    return header, rows


def markdown(summary: dict) -> str:
    from ..tables import markdown_table

    lat = summary["latency"]
    val = summary["val"]
    scored = (f"top-1 / top-5 on the run's val split ({val['images']} images of {val['data']})"
              if val["images"] is not None else f"no top-1: {val['missing']}")
    lines = [f"# Deploy: {summary['run']}", "",
             f"{summary['model']}, from {summary['weights']}; {scored}. Latency: {lat['statistic']} "
             f"after {lat['warmup']} warm-up passes, {lat['reps']} timed, on this CPU with "
             f"{lat['threads']} thread(s), {lat['input']}.", "",
             markdown_table(*table_rows(summary)), ""]
    if summary["calibration_images"]:
        lines += [f"int8 files calibrated on {summary['calibration_images']} of the run's training "
                  "images. The int8 .pt2 runs eagerly here (exact int8 simulation); torch.compile "
                  "with inductor freezing makes it fast.", ""]
    return "\n".join(lines)
