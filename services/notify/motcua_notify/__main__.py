"""``python -m motcua_notify serve | migrate | templates``."""

import typer

from motcua_kit.cli import service_cli
from motcua_notify.domain.occurrence import PROVIDED_VARIABLES
from motcua_notify.domain.templates import TemplateCatalogue
from motcua_notify.service import NotifyService
from motcua_notify.settings import NotifySettings

app = service_cli(NotifyService)


@app.command()
def templates() -> None:
    """Check the templates as the service would at start, and print each SMS's worst case."""
    s = NotifySettings()
    catalogue = TemplateCatalogue.load(
        s.templates_file,
        segment_limit=s.sms_segment_limit,
        encoding=s.sms_encoding,
        provided=PROVIDED_VARIABLES,
    )
    limit = f"{s.sms_segment_limit} segments ({s.sms_encoding.value})"
    typer.echo(f"{len(catalogue.templates)} templates OK; SMS limit {limit}")
    for name, chars, gsm, ucs2 in catalogue.sms_report():
        typer.echo(f"  {name:<28} {chars:>4} chars  GSM-7 {gsm} segment(s)  UCS-2 {ucs2}")


if __name__ == "__main__":
    app()
