"""The command line: `aclaudio` (main) parses the arguments, runs the subcommand and prints its
JSON summary as the last line; a subcommand's error is that summary's "error", in one line. A
subcommand's function is in commands.py, its arguments in parser.py; bench and bench_linear
measure speed against reference code.

May import: every layer (the portable encoder, aclaudio.export and aclaudio.hear, sits beside
it at the package's top).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import warnings
from collections.abc import Iterator
from importlib import metadata

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
        except (ValueError, OSError, DownloadError) as error:
            result = {"ok": False, "error": str(error)}
        except ModuleNotFoundError as error:
            extra = _extra_providing(error.name or "")
            if extra is None:
                raise  # not an optional package: a real bug, keep its traceback
            result = {
                "ok": False,
                "error": f"this command needs the optional package "
                f"{error.name!r}: pip install 'aclaudio[{extra}]'",
            }
        if not result["ok"]:
            print(f"aclaudio {args.command}: error: {result['error']}", file=sys.stderr)
    notes = list(dict.fromkeys(result.get("warnings", []) + messages))
    print(json.dumps(result | ({"warnings": notes} if notes else {}), default=str))
    return 0 if result["ok"] else 1
