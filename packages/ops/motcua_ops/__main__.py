"""``python -m motcua_ops`` is the ``motcua`` command."""

from motcua_ops.cli import app

if __name__ == "__main__":
    app()
