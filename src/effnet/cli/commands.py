"""Every `effnet` command: the module of this package that defines it and its one-line help, so
`effnet -h` lists them all and `effnet CMD` imports only CMD's module (a search's optuna and
SQLAlchemy, export's onnx, quantize's torchao load only when those commands run)."""

from __future__ import annotations

import argparse

COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("model_cmds", "list models: params, GMACs at eval size, resolutions"),
    "scale": ("model_cmds", "compound-scale a base network and show the result"),
    "profile": ("model_cmds", "params, GMACs, peak activation memory, step times"),
    "predict": ("model_cmds", "classify images"),
    "train": ("train_cmds", "train a model (default: the quick recipe on built-in digits)"),
    "eval": ("eval_cmds", "top-1/top-5 of weights (or an export) on a val split or a class folder"),
    "report": ("report_cmds", "a run's report.html: curves, per-class scores, calibration, mistakes"),
    "schedule": ("schedule_cmds", "print a progressive-learning schedule (V2 Algorithm 1)"),
    "search": ("search_cmds", "searches: compound-scaling coefficients, training-aware NAS"),
    "experiment": ("search_cmds", "experiments: scaling one dimension vs compound"),
    "export": ("deploy_cmds", "export to ONNX or a torch.export program (.pt2)"),
    "quantize": ("deploy_cmds", "int8 post-training quantization (PT2E, x86) -> .pt2"),
    "deploy": ("deploy_cmds", "a run's model.onnx (--int8: int8 .pt2 and .onnx too), each scored and timed"),
    "cam": ("deploy_cmds", "Grad-CAM heat maps as PNGs; --compare: several models side by side"),
}


def add(sub: argparse._SubParsersAction, name: str, **kwargs) -> argparse.ArgumentParser:
    """The parser of command `name`, with its help from COMMANDS."""
    return sub.add_parser(name, help=COMMANDS[name][1], **kwargs)


def chosen(argv: list[str]) -> str | None:
    """The command `argv` runs: its first word that names one (None: none does)."""
    return next((a for a in argv if a in COMMANDS), None)
