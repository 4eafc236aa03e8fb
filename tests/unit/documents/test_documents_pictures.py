"""docs/forms: a picture of every form, drawn by pdftoppm, current with the templates."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from motcua_documents import draw_forms
from motcua_documents.samples import KINDS

DOCS = Path(__file__).resolve().parents[3] / "docs" / "forms"


def test_every_form_has_a_current_picture_in_docs() -> None:
    assert draw_forms.main(["--output", str(DOCS), "--check"]) == 0
    page = (DOCS / "README.md").read_text(encoding="utf-8")
    for kind in KINDS:
        data = (DOCS / f"{kind}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert (width, height) == (420, 596)  # A5 (148 × 210 mm) at 72 dpi, rounded up
        assert f"({kind}.png)" in page


def test_a_changed_picture_is_reported_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert draw_forms.main(["--output", str(tmp_path)]) == 0
    assert draw_forms.main(["--output", str(tmp_path), "--check"]) == 0
    (tmp_path / "refusal.png").write_bytes(b"stale")
    assert draw_forms.main(["--output", str(tmp_path), "--check"]) == 1
    assert "refusal.png is out of date" in capsys.readouterr().err
