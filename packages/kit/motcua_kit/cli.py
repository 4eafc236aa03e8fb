"""The command line every service gets: ``python -m motcua_<svc> serve | migrate``."""

from __future__ import annotations

import typer

from motcua_kit.service import Service, ServiceHost


def service_cli(service_cls: type[Service]) -> typer.Typer:
    """A Typer app with ``serve`` (migrate, then run until SIGTERM) and ``migrate``."""
    app = typer.Typer(help=f"motcua {service_cls.name} service", no_args_is_help=True)

    @app.command()
    def serve(migrate_first: bool = typer.Option(True, help="Apply migrations first")) -> None:
        """Run the service until SIGTERM/SIGINT, then stop gracefully."""
        host = ServiceHost(service_cls, service_cls.settings_class())
        if migrate_first:
            host.migrate()
        host.serve_forever()

    @app.command()
    def migrate() -> None:
        """Apply the database migrations (the Helm chart's pre-install/pre-upgrade Job)."""
        ServiceHost(service_cls, service_cls.settings_class()).migrate()
        typer.echo("migrations applied")

    return app
