"""`effnet` command line: thin subcommands over the library. Nothing in the library imports this.

Each module in this package adds its subcommands with `register(subparsers)`; a `UserError` (or a
missing file, a bad image) ends the program with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# one module per group of commands, loaded only when its command runs (keeps `effnet -h` fast)
COMMAND_MODULES = ("model_cmds", "train_cmds", "schedule_cmds", "search_cmds", "deploy_cmds")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # bad flag: one line, exit 2 (argparse prints usage too)
        self.exit(2, f"effnet: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="effnet", description="EfficientNet V1 / Lite / V2: models, scaling, training.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..errors import UserError

    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UserError as e:
        print(f"effnet: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"effnet: error: no such file: {e.filename or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("effnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
