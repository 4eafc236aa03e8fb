"""Personal data never reaches the logs in clear."""

from __future__ import annotations

import json
import logging

from motcua_kit.logging import JsonFormatter, mask_pii


def test_mask_pii_masks_citizen_id_phone_and_email() -> None:
    text = "CCCD 079203004567, phone 0905123456 or +84 905 123 456, mail thuha@example.vn"
    masked = mask_pii(text)
    assert "079203004567" not in masked and "*********567" in masked
    assert "0905123456" not in masked and "*******456" in masked
    assert "+84 905 123 456" not in masked
    assert "thuha@example.vn" not in masked and "t***@example.vn" in masked


def test_json_formatter_masks_message_and_extras() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "filed by %s", ("079203004567",), None
    )
    record.applicant = {"phone": "0905123456", "email": "a.b@c.vn"}
    line = json.loads(JsonFormatter("dossier").format(record))
    assert line["message"] == "filed by *********567"
    assert line["applicant"] == {"phone": "*******456", "email": "a***@c.vn"}
    assert line["service"] == "dossier" and line["level"] == "INFO"
