"""``python -m tools.eventdocs generate|check``: the ``make generate`` / ``events-check`` targets.

``generate`` writes every output from the registry and the protos. ``check`` writes nothing: it
fails when an output is stale, when the AsyncAPI document is invalid, or when a service emits
a type the registry does not document (or the registry documents one nobody emits).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from tools.eventdocs.catalogue import ROOT, CatalogueError, build
from tools.eventdocs.emitters import scan_all, undocumented, unemitted
from tools.eventdocs.outputs import render_outputs
from tools.eventdocs.validate import asyncapi_errors


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def generate() -> int:
    catalogue = build()
    errors = asyncapi_errors(catalogue.document)
    if errors:
        print("the generated AsyncAPI document is invalid:", *errors, sep="\n  ", file=sys.stderr)
        return 1
    for path, text in render_outputs(catalogue).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {_relative(path)}")
    return 0


def check() -> int:
    catalogue = build()
    problems = [f"asyncapi.yaml: {e}" for e in asyncapi_errors(catalogue.document)]
    for path, text in render_outputs(catalogue).items():
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(), text.splitlines(), _relative(path), "generated", lineterm=""
            )
            excerpt = "\n".join(list(diff)[:20])
            problems.append(f"{_relative(path)} is stale: run `make generate`\n{excerpt}")
    emissions = scan_all(ROOT / "services")
    problems += undocumented(emissions, catalogue.registry)
    problems += unemitted(emissions, catalogue.registry)
    if problems:
        print("event catalogue check failed:", *problems, sep="\n  - ", file=sys.stderr)
        return 1
    print(
        f"event catalogue current: {len(catalogue.events)} types on "
        f"{len(catalogue.registry.topics)} topics, every emitted type documented"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.eventdocs", description=__doc__)
    parser.add_argument("command", choices=["generate", "check"])
    args = parser.parse_args(argv)
    try:
        return generate() if args.command == "generate" else check()
    except CatalogueError as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
