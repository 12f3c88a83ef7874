"""The ``cliquegen`` command line.  Exit status: 0 ok, 2 bad input, 1 internal error.  A reader
that closes standard output early (``cliquegen list --json | head``) ends the command quietly,
with status 0, as it ends ``head``'s interest."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Sequence

from .._io import Interrupted, signals_raise
from ..errors import CliqueGenError, SpecError, os_error_message, printable
from ..spec.limits import lifted
from .commands import EXIT_OK, EXIT_USAGE
from .parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if sys.stdout is None:  # started with standard output closed (`cliquegen list >&-`)
        return _fail("cliquegen: error: standard output is closed; nothing was done", EXIT_USAGE)
    try:
        with signals_raise(), lifted(getattr(args, "force", False)):
            status = args.handler(args)
            sys.stdout.flush()  # a full disk or a closed pipe shows here, not at exit
            return status
    except SpecError as error:  # every line located: PATH:LINE:COL: error: ...
        return _fail(str(error), EXIT_USAGE)
    except CliqueGenError as error:
        return _fail(f"cliquegen: error: {error}", EXIT_USAGE)
    except (Interrupted, KeyboardInterrupt) as stop:
        signal_name, status = (
            (stop.name, stop.exit_status) if isinstance(stop, Interrupted) else ("SIGINT", 130)
        )
        return _fail(f"cliquegen: stopped by {signal_name}; no output was left half-written", status)
    except OSError as error:
        if error.errno == errno.EPIPE:  # the reader stopped early (`| head`): nothing more to say
            _drop_stdout()
            return EXIT_OK
        return _fail(f"cliquegen: error: {os_error_message(error)}", EXIT_USAGE)
    except MemoryError:
        return _fail("cliquegen: error: out of memory; try a smaller batch or spec", EXIT_USAGE)


def _drop_stdout() -> None:
    """Send what is left for standard output nowhere, so the exit's own flush stays quiet."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _fail(message: str, status: int) -> int:
    """Print ``message`` (control characters escaped) on standard error; return ``status``."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError):  # the same broken stdout: send what is left nowhere
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    with contextlib.suppress(OSError, ValueError, AttributeError):
        print(printable(message, keep_newlines=True), file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
