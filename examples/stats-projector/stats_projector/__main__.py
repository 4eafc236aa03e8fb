"""``python -m stats_projector run | report``.

``run`` consumes motcua.dossier.v1 until SIGTERM; ``report`` prints the statistics per agency
from the SQLite file (``--json`` for machines).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, time
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from stats_projector.calendar import WorkingDays
from stats_projector.projection import build_subscriber, metadata, statistics
from stats_projector.settings import ProjectorSettings


def _calendar(settings: ProjectorSettings) -> WorkingDays:
    return WorkingDays.load(
        settings.holidays_extra_file,
        timezone=settings.timezone,
        office_close=time.fromisoformat(settings.office_close),
    )


def run(settings: ProjectorSettings) -> int:
    build_subscriber(_calendar(settings)).run(settings)
    return 0


def report(settings: ProjectorSettings, args: argparse.Namespace) -> int:
    if settings.database_url.startswith("sqlite:///"):
        Path(settings.database_url.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    engine = create_engine(settings.database_url)
    metadata.create_all(engine)
    try:
        with Session(engine) as session:
            rows = statistics(
                session,
                args.agency,
                date.fromisoformat(args.from_date) if args.from_date else None,
                date.fromisoformat(args.to_date) if args.to_date else None,
            )
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], ensure_ascii=False, indent=2))
        return 0
    header = f"{'agency':<12}{'received':>9}{'early':>7}{'on time':>9}{'late':>6}{'open':>6}  ratio"
    print(header)
    for r in rows:
        print(
            f"{r.agency_code:<12}{r.received:>9}{r.early:>7}{r.on_time:>9}{r.late:>6}"
            f"{r.in_progress:>6}  {r.on_time_ratio:.1%}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stats_projector", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="consume dossier events until SIGTERM")
    rep = commands.add_parser("report", help="print on-time / late counts per agency")
    rep.add_argument("--agency", default="", help="one agency code (default: all)")
    rep.add_argument(
        "--from", dest="from_date", default="", help="received on or after, YYYY-MM-DD"
    )
    rep.add_argument("--to", dest="to_date", default="", help="received on or before, YYYY-MM-DD")
    rep.add_argument("--json", action="store_true", help="JSON instead of a table")
    args = parser.parse_args(argv)
    settings = ProjectorSettings()
    return run(settings) if args.command == "run" else report(settings, args)


if __name__ == "__main__":
    sys.exit(main())
