"""`prefdisco check FILE`: static validation + sandboxed numerical probe of one candidate."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from discovery.errors import UserError


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check(
        file: Path = typer.Argument(..., help="Python file holding one candidate loss function."),
        as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
        timeout: float = typer.Option(10.0, "--timeout", help="Wall-clock limit for the probe (s)."),
    ) -> None:
        """Validate and probe one candidate loss in the sandbox; exit 0 only when accepted."""
        if not file.is_file():
            raise UserError(f"no such file: {file} (pass the path of a .py file with one loss)")
        code = file.read_text(encoding="utf-8", errors="replace")
        from discovery.sandbox import SandboxLimits, SandboxPool, validate_source

        errors = validate_source(code)
        if errors:
            first = min(errors, key=lambda e: ({"syntax": 0, "unsafe": 1}.get(e.kind, 2), e.line))
            verdict = {"file": str(file), "accepted": False, "failure_class": first.kind,
                       "message": f"line {first.line}: {first.message}",
                       "validation_errors": [vars(e) for e in errors]}
        else:
            with SandboxPool(size=1, limits=SandboxLimits(wall_timeout_s=timeout)) as pool:
                result = pool.probe(code)
            if result.failure_class == "infrastructure":  # the sandbox, not the candidate
                raise UserError(result.message)
            verdict = {"file": str(file), "accepted": result.ok, **result.to_dict(),
                       "validation_errors": []}
        if as_json:
            typer.echo(json.dumps(verdict))
        elif verdict["accepted"]:
            typer.echo(f"accepted: {file}  fingerprint {verdict['fingerprint'][:16]}  "
                       f"probe {verdict['wall_time_s'] * 1000:.0f} ms")
        else:
            typer.echo(f"rejected [{verdict['failure_class']}]: {verdict['message']}")
            for error in verdict["validation_errors"][1:]:
                typer.echo(f"  also {error['kind']} (line {error['line']}): {error['message']}")
        raise typer.Exit(0 if verdict["accepted"] else 1)
