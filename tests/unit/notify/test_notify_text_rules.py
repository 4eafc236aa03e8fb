"""Issue 14, points 3 and 5, in notify: a phone in other scripts' digits is no SMS address, and
format characters in a value (from a record older than the rule) never reach a message."""

from __future__ import annotations

import pytest

from motcua_notify import events
from motcua_notify.domain.notification import Contact, mask_recipient, normalise_phone
from motcua_notify.domain.occurrence import PROVIDED_VARIABLES
from motcua_notify.domain.pacing import QuietHours
from motcua_notify.domain.states import Channel
from motcua_notify.domain.templates import DEFAULT_FILE, TemplateCatalogue
from motcua_notify.settings import NotifySettings


@pytest.mark.parametrize("phone", ["０９０５１２３４５６", "٠٩٠٥١٢٣٤٥٦", "+84 ９05 123 456"])
def test_a_phone_in_other_digits_is_no_sms_address(phone: str) -> None:
    assert normalise_phone(phone) == ""
    assert Contact("001203004567", "Hà", phone, "").address(Channel.SMS) == ""
    assert mask_recipient(Channel.SMS, "0905123456") == "*******456"


def test_quiet_hours_take_ascii_digits_only() -> None:
    assert QuietHours.parse("21:00-07:00", "Asia/Ho_Chi_Minh") is not None
    with pytest.raises(ValueError):
        QuietHours.parse("２１:００-07:00", "Asia/Ho_Chi_Minh")


def test_bidi_and_zero_width_characters_never_reach_a_rendered_message() -> None:
    catalogue = TemplateCatalogue.load(
        DEFAULT_FILE,
        segment_limit=NotifySettings().sms_segment_limit,
        provided=PROVIDED_VARIABLES,
    )
    template = catalogue.for_event(events.DOSSIER_SUBMITTED)
    assert template is not None
    values = dict.fromkeys(PROVIDED_VARIABLES[events.DOSSIER_SUBMITTED], "x")
    values["applicant_name"] = "Nguyễn \u202eThị\u200b Hà"
    email = catalogue.render_email(template, values)
    assert "Nguyễn Thị Hà" in email.body
    assert "\u202e" not in email.body and "\u200b" not in email.body
    sms = catalogue.render_sms(template, values)
    assert "\u202e" not in sms.unicode_text and "\u200b" not in sms.unicode_text
