"""`effnet` command line: thin subcommands over the library. Nothing in the library imports this.

Each module in this package adds its subcommands with `register(subparsers)`; a `UserError` (or a
missing file, a bad image) ends the program with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import signal
import sys
import warnings

# OSErrors of the machine rather than of the user's input: exit 1 instead of 2
_FAULTS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO}


def one_line(text: str) -> str:
    """`text` with newlines and other control characters escaped (a file name or a flag value may
    hold them): an error stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _fail(message: str) -> None:
    print(f"effnet: error: {one_line(message)}", file=sys.stderr)


def _warn_as_effnet(show_other):
    def show(message, category, filename, lineno, file=None, line=None):
        from ..errors import EffnetWarning

        if issubclass(category, EffnetWarning):
            print(f"effnet: warning: {one_line(message)}", file=sys.stderr)
        else:
            show_other(message, category, filename, lineno, file, line)
    return show


def _only_effnet_warnings() -> None:
    """effnet's own warnings as one line each; other libraries' warnings hidden. A refusal is one
    line, and torch's "Detected pickle protocol" under a refused .pth or PIL's bomb warning under
    a refused image would add lines about the libraries' internals. Python's -W and PYTHONWARNINGS
    (sys.warnoptions) still decide when given: `PYTHONWARNINGS=default effnet ...` shows all.
    Call inside warnings.catch_warnings(); forked DataLoader workers inherit it."""
    from ..errors import EffnetWarning

    if not sys.warnoptions:
        warnings.simplefilter("ignore")
        warnings.simplefilter("default", EffnetWarning)
    warnings.showwarning = _warn_as_effnet(warnings.showwarning)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # bad flag: one line, exit 2 (argparse prints usage too)
        _fail(message)
        self.exit(2)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `effnet` parser for `argv`: the module of the command it runs adds its commands in full;
    every other command is only listed (name and help), so nothing of its stack is imported."""
    from .commands import COMMANDS, chosen

    parser = _Parser(prog="effnet", description="EfficientNet V1 / Lite / V2: models, scaling, training.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    command = chosen(sys.argv[1:] if argv is None else argv)
    if command is not None:
        importlib.import_module(f"{__name__}.{COMMANDS[command][0]}").register(sub)
    for name, (_, help_line) in COMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=help_line)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code. `argv` None: this process is the `effnet` program (the
    console script, `python -m effnet`), which ends when the command does."""
    from ..errors import UserError

    try:
        try:
            return _run(argv)
        finally:
            if argv is None:
                _end_on_signal()
    except UserError as e:
        _fail(str(e))
        return 2
    except FileNotFoundError as e:
        _fail(f"no such file: {e.filename or e}")
        return 2
    except OSError as e:  # a path that cannot be written (a file where a folder should be), a full disk
        _fail(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        return 1 if e.errno in _FAULTS else 2
    except KeyboardInterrupt as e:  # Ctrl-C, or work stopped by a signal (effnet.signals)
        print(f"effnet: {one_line(str(e) or 'interrupted')}", file=sys.stderr)
        return getattr(e, "exit_code", 130)


def _run(argv: list[str] | None) -> int:
    """Parse and run. Building the parser imports torch (seconds): a signal meanwhile is recorded
    (effnet.signals), not raised inside an import where a finaliser may swallow it. A command with
    a `stop_hint` polls that record at its safe points, so it runs under the same handler; any
    other gets Python's KeyboardInterrupt back."""
    from ..signals import StopOnSignal

    with contextlib.ExitStack() as handler:
        stop = handler.enter_context(StopOnSignal())
        try:
            args = build_parser(argv).parse_args(argv)
        except SystemExit as e:  # -h, or a bad flag already reported: the exit code, for in-process callers
            return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
        how = getattr(args, "stop_hint", None)
        if how is None:
            handler.close()
            stop.check("before the command started")
        with warnings.catch_warnings():
            _only_effnet_warnings()
            code = int(args.run(args) or 0)
    if how is not None:
        stop.check(how)  # a signal after the command's last safe point
    return code


def _end_on_signal() -> None:
    """From here on SIGINT and SIGTERM end the process at once by their default action: the
    command is over, and in the second of torch's teardown that follows, Python would raise the
    KeyboardInterrupt inside a finaliser, print it and exit 0. (A signal that came before this
    call is raised here as a KeyboardInterrupt: signal.signal runs pending handlers first.)"""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
