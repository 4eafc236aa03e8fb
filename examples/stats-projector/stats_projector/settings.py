"""The projector's settings: the subscriber kit's, read from ``STATS_PROJECTOR_*``."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from motcua_subscriber import SubscriberSettings


class ProjectorSettings(SubscriberSettings):
    """Kafka, the SQLite file, and the working-day calendar the verdicts are counted in."""

    model_config = SettingsConfigDict(extra="ignore", env_prefix="STATS_PROJECTOR_")

    database_url: str = "sqlite:///.state/stats-projector.db"
    timezone: str = "Asia/Ho_Chi_Minh"
    office_close: str = "17:00"  # a completion at or after it counts on the next working day
    # The announced day swaps (holidays_extra.yaml format); empty: public holidays only.
    holidays_extra_file: Path | None = None
