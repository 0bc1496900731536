"""The command line: `aclaudio` (main) parses the arguments, runs the subcommand and prints its
JSON summary as the last line; a subcommand's error is that summary's "error", in one line. A
subcommand's function is in commands.py (helped by runs_table and embed_audio), its arguments
in parser.py; bench and bench_linear measure speed against reference code, bench_step where a
pretraining step's time goes, and gpu_kit holds the measurements of the GPU run kit
(scripts/gpu_check.sh).

May import: every layer (the portable encoder, aclaudio.export and aclaudio.hear, sits beside
it at the package's top).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from aclaudio.cli.parser import build_parser
from aclaudio.data.download import DownloadError
from aclaudio.training.warning_lines import show_as_lines


@contextlib.contextmanager
def _recorded_warnings() -> Iterator[list[str]]:
    """The messages of this package's own warnings raised inside (still shown on stderr, one
    line each), for the JSON summary: a skipped checkpoint or an untrained class is never
    silent."""
    messages: list[str] = []
    with warnings.catch_warnings():

        def record(message, category, *where):
            if category.__module__.partition(".")[0] == "aclaudio":
                messages.append(str(message))
            show_as_lines(message, category, *where)

        warnings.showwarning = record
        yield messages


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # the reader went away (`aclaudio ... | head`): no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _extra_providing(module: str) -> str | None:
    """The extra of this package (study, cluster, dev) that installs `module`, from the
    installed metadata; None when no extra does."""
    top = module.partition(".")[0]
    for requirement in metadata.requires("aclaudio") or []:
        name, _, marker = requirement.partition(";")
        package = re.split(r"[<>=!~ \[]", name.strip(), maxsplit=1)[0]
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)", marker)
        if extra and package.lower().replace("-", "_") == top.lower():
            return extra.group(1)
    return None


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    with _recorded_warnings() as messages:
        try:
            result = {"ok": True, **args.run(args)}
        except BrokenPipeError:  # the reader went away: main's concern, not the command's error
            raise
        except Exception as error:  # every failure ends as the JSON summary, in one line
            result = {"ok": False, "error": _one_line(error, args.command)}
        if not result["ok"]:
            print(f"aclaudio {args.command}: error: {result['error']}", file=sys.stderr)
    notes = list(dict.fromkeys(result.get("warnings", []) + messages))
    print(json.dumps(result | ({"warnings": notes} if notes else {}), default=str))
    return 0 if result["ok"] else 1


def _one_line(error: Exception, command: str) -> str:
    """What failed, in one line. Errors the project raises on purpose (ValueError, OSError,
    DownloadError) say it themselves; an optional package missing names its extra; anything
    else is a bug or a failure nobody foresaw: its type and message, and the file where its
    traceback went."""
    if isinstance(error, ModuleNotFoundError) and (extra := _extra_providing(error.name or "")):
        return (
            f"this command needs the optional package {error.name!r}: "
            f"pip install 'aclaudio[{extra}]'"
        )
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, ValueError | OSError | DownloadError):
        return text
    log = Path(tempfile.gettempdir()) / f"aclaudio-{command}-{os.getpid()}.log"
    log.write_text("".join(traceback.format_exception(error)))
    return f"{type(error).__name__}: {text} (the traceback is in {log})"
