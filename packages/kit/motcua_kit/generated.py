"""Pages drawn from code (state tables, workflows, catalogues): written, or checked in CI.

Every such tool ends the same way — write the page, or with ``--check`` compare and fail when
the committed copy has drifted — so the drift message and exit codes are the same everywhere.
"""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(output: Path, page: str, *, check: bool, redraw: str) -> int:
    """Write ``page`` to ``output`` (0), or with ``check`` return 1 when it differs.

    ``redraw`` is the command that brings the page up to date; the failure message names it.
    """
    if check:
        current = output.read_text(encoding="utf-8") if output.exists() else None
        if current != page:
            print(f"{output} is out of date: run {redraw}", file=sys.stderr)
            return 1
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    print(f"wrote {output}")
    return 0
