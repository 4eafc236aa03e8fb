"""Every generated file in one list: ``make generate`` and ``make check-generated``.

Each generator already knows how to write its output and how to compare the committed copy
(``--check``). Listing them here once means there is one command to bring everything up to
date and one CI step that reports every stale output, not the first one only. The order
matters for writing: the protos' Python code comes before the event catalogue that reads it.

``python -m tools.generate [--check] [NAME ...]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


@dataclass(frozen=True)
class Generator:
    """One generator: its name, what it writes, and the commands that write or check it."""

    name: str
    outputs: tuple[str, ...]
    write: tuple[str, ...]
    check: tuple[str, ...]


def _page(name: str, module: str, output: str) -> Generator:
    """A page drawn by a service's ``tools`` module (``--output PATH [--check]``)."""
    argv = (PY, "-m", module, "--output", output)
    return Generator(name, (output,), argv, (*argv, "--check"))


GENERATORS: tuple[Generator, ...] = (
    Generator(
        "protos",
        ("packages/contracts/motcua/",),
        ("bash", "scripts/gen_protos.sh"),
        ("bash", "scripts/check_protos.sh"),
    ),
    Generator(
        "events",
        (
            "docs/events/",
            "packages/kit/motcua_kit/topics.json",
            "helm/motcua/topics.json",
            "packages/contracts/motcua/topics.py",
        ),
        (PY, "-m", "tools.eventdocs", "generate"),
        (PY, "-m", "tools.eventdocs", "check"),
    ),
    _page("workflows", "motcua_dossier.tools.draw_workflows", "docs/workflows.md"),
    _page("payment-states", "motcua_payment.tools.draw_states", "docs/payment-states.md"),
    _page("notify-states", "motcua_notify.tools.draw_states", "docs/notify.md"),
    Generator(
        "forms",
        ("docs/forms/",),
        (PY, "-m", "motcua_documents.draw_forms", "--output", "docs/forms"),
        (PY, "-m", "motcua_documents.draw_forms", "--output", "docs/forms", "--check"),
    ),
)


def run(names: list[str], *, check: bool, generators: tuple[Generator, ...] = GENERATORS) -> int:
    """Run the chosen generators (all by default); with ``check``, every one, then report."""
    known = {g.name: g for g in generators}
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown generator {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    chosen = [known[n] for n in names] if names else list(generators)
    stale: list[str] = []
    for generator in chosen:
        argv = generator.check if check else generator.write
        if subprocess.run(argv, cwd=ROOT, check=False).returncode != 0:
            stale.append(generator.name)
            if not check:
                break  # a later generator may read this one's output
    if stale:
        verb = "stale" if check else "failed"
        print(f"generated files {verb}: {', '.join(stale)} (run `make generate`)", file=sys.stderr)
        return 1
    if check:
        print(f"generated files current: {', '.join(g.name for g in chosen)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when any output is stale")
    parser.add_argument("names", nargs="*", help="only these generators (default: all)")
    args = parser.parse_args(argv)
    return run(args.names, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
