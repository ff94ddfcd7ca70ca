"""The `edge-emo` command line. Heavy modules are imported inside each command, so device commands
(listen, personalize, devices, bridge-monitor) never import torch."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Speech emotion recognition for wearables: train, export, listen, personalize.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


@app.callback()
def main() -> None:
    """edge-emo command line."""
