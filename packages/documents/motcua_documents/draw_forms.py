"""Draw docs/forms: a picture of each form, from the shipped templates and the sample content.

Each form is rendered (unsigned: the agency's signature is invisible and changes every time)
and turned into a PNG by poppler's ``pdftoppm``, the tool a reader would use, so the picture
shows what a PDF viewer shows. ``python -m motcua_documents.draw_forms --output docs/forms``;
with ``--check`` it writes nothing and exits 1 naming each stale file (CI).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from motcua_documents.model import FormContent
from motcua_documents.render import render
from motcua_documents.samples import KINDS, SAMPLES
from motcua_documents.templates import load

RESOLUTION = 72  # dots per inch: an A5 page becomes 420 × 596 pixels


def picture(pdf: bytes) -> bytes:
    """The first page of ``pdf`` as PNG, drawn by pdftoppm."""
    with tempfile.TemporaryDirectory(prefix="motcua-forms-") as tmp:
        source = Path(tmp) / "form.pdf"
        source.write_bytes(pdf)
        subprocess.run(
            ["pdftoppm", "-png", "-r", str(RESOLUTION), "-singlefile", str(source), f"{tmp}/p"],
            check=True,
            timeout=60,
        )
        return (Path(tmp) / "p.png").read_bytes()


def page(titles: dict[str, str]) -> str:
    """docs/forms/README.md: one section per form, with its picture."""
    lines = [
        "# The one-stop-shop forms",
        "",
        # The page's own marker, spelled in two parts so this source is not taken for output.
        "<!-- Generated" + " by `python -m motcua_documents.draw_forms` (`make generate`) from",
        "     packages/documents/motcua_documents/forms.yaml and samples.py. Do not" + " edit. -->",
        "",
        "The papers of Circular 01/2018/TT-VPCP as motcua draws them (sample content, unsigned:",
        "the agency's PAdES signature does not change the picture). See docs/adr/0085.",
        "",
    ]
    for kind in KINDS:
        lines += [f"## {titles[kind]}", "", f"![{titles[kind]}]({kind}.png)", ""]
    return "\n".join(lines)


def outputs() -> dict[str, bytes]:
    """Every file of docs/forms, by name."""
    templates = load()
    files: dict[str, bytes] = {}
    titles: dict[str, str] = {}
    for kind in KINDS:
        content = FormContent.build(SAMPLES[kind])
        template = templates.forms[content.kind]
        titles[kind] = f"{template.form_number} — {template.title}"
        files[f"{kind}.png"] = picture(render(content, templates).pdf)
    files["README.md"] = page(titles).encode()
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=Path("docs/forms"))
    parser.add_argument("--check", action="store_true", help="fail if a picture is stale")
    args = parser.parse_args(argv)
    files = outputs()
    if args.check:
        stale = [
            name
            for name, data in files.items()
            if not (args.output / name).exists() or (args.output / name).read_bytes() != data
        ]
        for name in stale:
            print(f"{args.output / name} is out of date: run make generate", file=sys.stderr)
        return 1 if stale else 0
    args.output.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.output / name).write_bytes(data)
        print(f"wrote {args.output / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
