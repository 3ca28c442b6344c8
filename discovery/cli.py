"""`prefdisco <verb>`: the one command-line entry point.

Each verb lives in its own module under ``discovery/commands/`` and exposes ``register(app)``.
Command modules import heavy libraries (torch, transformers) inside the command body only, so
``prefdisco --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import typer

COMMAND_MODULES: tuple[str, ...] = (
    "run",          # run a discovery campaign / resume one           (issue: discovery loop)
    "evaluate",     # score one loss on a benchmark suite              (issue: evaluators)
    "check",        # validate + probe one candidate file in sandbox   (issue: sandbox)
    "views",        # leaderboard, show, compare                       (issue: discovery loop/review)
    "report",       # static HTML campaign report                      (issue: review)
    "export",       # export / promote winners                         (issue: review)
    "spa",          # self-generated preference data pipeline          (issue: SPA)
    "annotate",     # annotation app                                   (issue: annotation)
    "aggregate",    # aggregate human judgments                        (issue: aggregation)
    "tune",         # optuna tuning of finalists                       (issue: scale)
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


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"discovery.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"discovery.commands.{name}":
                continue  # verb not built yet
            raise
        module.register(app)


_register_all()


def main() -> None:
    """Console-script entry point; user errors surface as one line on stderr and exit code 2."""
    from discovery.errors import UserError

    try:
        app()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
