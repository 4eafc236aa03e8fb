"""The command line every service gets: ``python -m motcua_<svc> serve | migrate``."""

from __future__ import annotations

import typer

from motcua_kit.service import Service, ServiceHost


def service_cli(service_cls: type[Service]) -> typer.Typer:
    """A Typer app with ``serve`` (migrate, then run until SIGTERM) and ``migrate``."""
    app = typer.Typer(
        help=f"motcua {service_cls.name} service",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )

    def build() -> ServiceHost:
        # Bad configuration or reference data stops the service with one clear line.
        try:
            return ServiceHost(service_cls, service_cls.settings_class())
        except Exception as exc:
            typer.echo(f"motcua-{service_cls.name}: cannot start: {exc}", err=True)
            raise typer.Exit(2) from None

    @app.command()
    def serve(migrate_first: bool = typer.Option(True, help="Apply migrations first")) -> None:
        """Run the service until SIGTERM/SIGINT, then stop gracefully."""
        host = build()
        if migrate_first:
            host.migrate()
        host.serve_forever()

    @app.command()
    def migrate() -> None:
        """Apply the database migrations (the Helm chart's pre-install/pre-upgrade Job).

        Connects with MOTCUA_<SVC>_MIGRATION_DATABASE_URL, the schema owner, when it is set.
        """
        build().migrate()
        typer.echo("migrations applied")

    return app
