"""The one place where errors become messages and exit codes.

Expected errors (`RunnerError`, click usage errors) print one line and exit with their
code. Anything else prints one line and the path of a log holding the (redacted)
traceback; `--debug` prints the traceback itself. Ctrl-C is 130.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from runner.errors import InvalidMission, InvalidPolicy, RunnerError
from runner.output import Output


class Exit(Exception):
    """Raised by `handle_errors` to carry the exit code out to `main`."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _crash_log(text: str, state_dir: Path | None) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for base in (state_dir / "logs" if state_dir else None, Path(tempfile.gettempdir())):
        if base is None:
            continue
        try:
            base.mkdir(parents=True, exist_ok=True)
            path = base / f"runner-crash-{stamp}.log"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return Path("(unwritable)")


@contextlib.contextmanager
def handle_errors(
    out: Output, *, debug: bool, state_dir: Callable[[], Path | None] = lambda: None
) -> Iterator[None]:
    try:
        yield
    except RunnerError as exc:
        if debug:
            out.error(out.redactor(traceback.format_exc()))
        if isinstance(exc, InvalidMission | InvalidPolicy) and exc.findings:
            if out.json_mode:
                out.json({"error": exc.message, "findings": [f.serialize() for f in exc.findings]})
            else:
                for finding in exc.findings:
                    out.error(str(finding))
        out.error(f"runner: error: {exc}")
        raise Exit(exc.exit_code) from None
    except click.exceptions.Exit as exc:
        raise Exit(exc.exit_code) from None
    except click.Abort:
        out.error("runner: interrupted")
        raise Exit(130) from None
    except click.ClickException as exc:
        out.error(f"runner: error: {exc.format_message()}")
        raise Exit(2) from None
    except KeyboardInterrupt:
        out.error("runner: interrupted")
        raise Exit(130) from None
    except BrokenPipeError:
        raise Exit(1) from None
    except Exception as exc:
        text = out.redactor(traceback.format_exc())
        if debug:
            out.error(text)
        log = _crash_log(text, state_dir())
        out.error(
            f"runner: internal error: {type(exc).__name__}: {out.redactor(str(exc))}\n"
            f"  the traceback is in {log}; please report it (run with --debug to see it here)"
        )
        raise Exit(1) from None
