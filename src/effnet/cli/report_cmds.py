"""`effnet report RUN_DIR`: the run report, RUN_DIR/report.html (tools/report.py says what it shows
and how each number is made); `effnet train` writes it too when a run ends (`report_after_training`)."""

from __future__ import annotations

import argparse
import sys

from . import commands
from .argtypes import nonneg_int, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = commands.add(sub, "report", description="Write RUN_DIR/report.html: one page that opens from "
                     "disk with the run's config, data summary, curves, confusion matrix, per-class "
                     "precision/recall/F1, calibration and its most confidently wrong val images "
                     "with Grad-CAM, all from the run's best weights on its own val split.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of `effnet train`")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:1 (default: the run's where this machine has it, else auto)")
    p.add_argument("--amp", default=None, choices=("none", "bf16", "fp16"), help="default: the run's")
    p.add_argument("-b", "--batch-size", type=positive_int, default=None,
                   help="eval batch (default: the trainer's, max(batch size, 64))")
    p.add_argument("-j", "--workers", type=nonneg_int, default=None)
    p.add_argument("--mistakes", type=nonneg_int, default=24,
                   help="most confidently wrong val images to show with Grad-CAM (default 24)")
    p.set_defaults(run=cmd_report)


def _done(page) -> None:
    e = page.evaluation
    print(f"effnet report: {e.images} val images, {page.best['weights']}: top-1 {e.top1:.2f} %, "
          f"ECE {e.calib.ece:.4f}; wrote {page.run.report_file} in {page.seconds.get('total', 0):.1f} s",
          flush=True)


def cmd_report(args) -> int:
    from ..tools.report import write_report

    _done(write_report(args.run_dir, device=args.device, amp=args.amp, batch_size=args.batch_size,
                       workers=args.workers, mistakes=args.mistakes))
    return 0


def report_after_training(run_dir: str) -> None:
    """The report of a run `effnet train` just finished. The run is saved whatever happens here: a
    report that cannot be written costs one warning line, never the run or the exit status."""
    from ..tools.report import write_report

    try:
        _done(write_report(run_dir))
    except Exception as e:  # noqa: BLE001 - any failure here must leave the trained run as it is
        from . import one_line

        why = (e.strerror + (f": {e.filename}" if e.filename else "")) if isinstance(e, OSError) \
            and e.strerror else str(e) or type(e).__name__
        print(f"effnet: warning: the run report was not written ({one_line(why)}); the run is saved "
              f"in {run_dir}; try again with: effnet report {run_dir}", file=sys.stderr, flush=True)
