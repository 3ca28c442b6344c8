"""The CLI, `prefdisco <verb>`: one module per verb in this package, each exposing ``register(app)``.

Command modules import heavy libraries (torch, transformers) inside the command body only, so
``prefdisco --help`` stays fast. ``python -m discovery.commands`` is the same entry point.
"""

from __future__ import annotations

import importlib
import sys

import typer

COMMAND_MODULES: tuple[str, ...] = (
    "run",          # run a discovery campaign / resume one
    "evaluate",     # score one loss on a benchmark suite
    "check",        # validate + probe one candidate file in the sandbox
    "views",        # leaderboard, show, compare
    "report",       # static HTML campaign report
    "export",       # export / promote winners
    "spa",          # self-generated preference data pipeline
    "annotate",     # annotation app
    "aggregate",    # aggregate human judgments
    "tune",         # Optuna tuning of finalists and baselines
)

app = typer.Typer(
    name="prefdisco",
    help="Discover preference-optimisation losses with LLMs; evaluate, review and export them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _options(
    trusted_code_without_sandbox: bool = typer.Option(
        False, "--trusted-code-without-sandbox",
        help="Where no sandbox can be had (no bubblewrap, no Landlock), run candidate code WITHOUT "
             "isolation instead of refusing. Only for code you trust."),
) -> None:
    """Discover preference-optimisation losses with LLMs; evaluate, review and export them."""
    if trusted_code_without_sandbox:
        import os

        from discovery.sandbox.limits import TRUSTED_CODE_ENV

        os.environ[TRUSTED_CODE_ENV] = "1"


for _name in COMMAND_MODULES:  # a missing verb module is a packaging error: let it raise
    importlib.import_module(f"discovery.commands.{_name}").register(app)


def main() -> None:
    """Console-script entry point; user errors surface as one line on stderr and exit code 2."""
    from discovery.errors import UserError

    try:
        app()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
