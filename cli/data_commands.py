"""Placeholder removed once scan/sample-data commands land."""
import typer


def register(app: typer.Typer) -> None:
    """No commands yet."""
