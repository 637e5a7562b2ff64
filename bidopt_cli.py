"""The `bidopt` command: joins the sub-commands each package owns, and nothing else.

Each package registers its own commands, so no package imports another against the data flow
just to reach a command. Heavy imports (mlflow, lightgbm) happen inside the commands, which keeps
`bidopt --help` fast.
"""

from __future__ import annotations

import typer

import bidding.cli
import features.cli
import serving.cli
import training.cli

app = typer.Typer(
    name="bidopt",
    help=(
        "Bid optimization for programmatic advertising: synthetic or real ad logs -> calibrated "
        "pCTR/pCVR models in the MLflow registry -> a bidding service answering per impression."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
features.cli.register(app)
training.cli.register(app)
serving.cli.register(app)
bidding.cli.register(app)

if __name__ == "__main__":
    app()
