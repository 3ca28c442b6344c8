"""`prefdisco export` and `prefdisco promote`: ship a reviewed loss as code.

    prefdisco export DIR ID --to trl --out my_loss_trl.py    # TRL trainer module + its pytest file
    prefdisco export DIR ID --to function --out my_loss.py   # just the loss function
    prefdisco export --loss dpo --to trl --out dpo_trl.py    # a registered loss, or --loss path/to/file.py
    prefdisco promote DIR ID                                 # into candidate_losses/discovered/

The rendering lives in ``discovery.review.export`` (name, code, metadata in; files out); this module only
finds the loss: a campaign candidate, a registered loss or a file.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Optional

import typer

from discovery.errors import UserError

def _iso(timestamp: Any) -> Any:
    if isinstance(timestamp, (int, float)):
        return dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc).isoformat(timespec="seconds")
    return timestamp


def candidate_from_campaign(campaign_dir: Path, candidate_id: str, name: str | None = None):
    """Read one candidate through the program database and shape it for ``discovery.review.export``."""
    from discovery.archive.campaign_dir import CampaignDir
    from discovery.review.export import ExportableLoss, safe_identifier

    if not campaign_dir.is_dir():
        raise UserError(f"campaign directory {campaign_dir} not found")
    db = CampaignDir.open(campaign_dir).database()
    try:
        row = db.get(candidate_id)
        known = [] if row else [r.id for r in db.leaderboard()[:8]]
    finally:
        db.close()
    if row is None:
        raise UserError(f"no candidate {candidate_id!r} in {campaign_dir}; best ids: {', '.join(known) or 'none'}")
    code = row.code
    if not code and row.is_baseline:
        return registry_loss(row.name, name=name, extra={"campaign": str(campaign_dir.resolve())})
    if not code:
        raise UserError(f"candidate {candidate_id} has no code to export")
    metadata = {
        "campaign": str(campaign_dir.resolve()),
        "candidate_id": row.id,
        "status": str(row.status),
        "fitness": row.fitness,
        "fitness_se": row.fitness_se,
        "heldout": row.heldout,
        "heldout_se": row.heldout_se,
        "screen_fitness": row.screen_fitness,
        "proposer": row.proposer,
        "parents": row.parent_ids,
        "generation": row.generation,
        "created_at": _iso(row.created_at),
        "thought": row.thought or "",
        "failure_class": row.failure_class,
    }
    loss_name = safe_identifier(name or row.name or row.id)
    return ExportableLoss(name=loss_name, code=code, metadata={k: v for k, v in metadata.items() if v is not None})


def registry_loss(name_or_file: str, name: str | None = None, extra: dict[str, Any] | None = None):
    """A registered loss by name, or a .py file holding one contract function."""
    from candidate_losses.source import strip_decorators
    from discovery.review.export import ExportableLoss, safe_identifier

    path = Path(name_or_file)
    if path.suffix == ".py":
        if not path.is_file():
            raise UserError(f"loss file {path} not found")
        metadata = {"source_file": str(path.resolve()), **(extra or {})}
        return ExportableLoss(safe_identifier(name or path.stem), path.read_text(), metadata)
    from candidate_losses import get_loss

    try:
        spec = get_loss(name_or_file)
    except KeyError as exc:
        raise UserError(f"{exc.args[0]}; or pass the path of a .py file") from None
    metadata = {
        "origin": spec.origin,
        "reference": spec.reference,
        "batch_coupled": spec.batch_coupled,
        **spec.provenance,
        **(extra or {}),
    }
    return ExportableLoss(safe_identifier(name or spec.name), strip_decorators(spec.source), metadata)


def _resolve(campaign_dir: Optional[Path], candidate_id: Optional[str], loss: Optional[str], name: Optional[str]):
    if loss is not None:
        if campaign_dir is not None or candidate_id is not None:
            raise UserError("pass either DIR ID or --loss NAME_OR_FILE, not both")
        return registry_loss(loss, name=name)
    if campaign_dir is None or candidate_id is None:
        raise UserError("pass a campaign DIR and candidate ID (see `prefdisco leaderboard DIR`), or --loss NAME_OR_FILE")
    return candidate_from_campaign(campaign_dir, candidate_id, name=name)


def _check_status(loss: Any, force: bool) -> None:
    status = loss.metadata.get("status")
    if status not in (None, "evaluated") and not force:
        raise UserError(f"candidate {loss.metadata.get('candidate_id')} is {status!r}, not evaluated; pass --force to export it anyway")


def _static_check(loss: Any, force: bool) -> None:
    """Refuse code the sandbox's static validator rejects (AST only; nothing runs)."""
    try:
        from discovery.sandbox import validate_source
    except ImportError:
        return
    errors = validate_source(loss.code)
    if errors and not force:
        first = errors[0]
        raise UserError(f"loss code fails static validation ({getattr(first, 'message', first)}); pass --force to export it anyway")


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_command(
        campaign_dir: Optional[Path] = typer.Argument(None, help="Campaign directory (holds campaign.db)."),
        candidate_id: Optional[str] = typer.Argument(None, help="Candidate id, as in `prefdisco leaderboard DIR`."),
        to: str = typer.Option("trl", "--to", help="'trl': module with a DPOTrainer subclass + pytest file; 'function': just the loss."),
        out: Path = typer.Option(..., "--out", help="Module path to write (or a directory to write <name>_trl.py / <name>.py in)."),
        loss: Optional[str] = typer.Option(None, "--loss", help="Export a registered loss (e.g. dpo) or a .py file instead of a candidate."),
        name: Optional[str] = typer.Option(None, "--name", help="Name for the loss (default: the candidate's or registry name)."),
        force: bool = typer.Option(False, "--force", help="Overwrite files; export unevaluated or statically rejected code."),
        as_json: bool = typer.Option(False, "--json", help="Print the written paths as JSON."),
    ) -> None:
        """Write a reviewed loss as standalone code: a TRL trainer module (+ test) or a plain function."""
        from discovery.review.export import export_loss

        exportable = _resolve(campaign_dir, candidate_id, loss, name)
        _check_status(exportable, force)
        _static_check(exportable, force)
        written = export_loss(exportable, to, out, force=force)
        if as_json:
            typer.echo(json.dumps(written.to_dict()))
        else:
            typer.echo(f"wrote {written.module}" + (f" and {written.test}" if written.test else ""))

    @app.command("promote")
    def promote_command(
        campaign_dir: Path = typer.Argument(..., help="Campaign directory (holds campaign.db)."),
        candidate_id: str = typer.Argument(..., help="Candidate id, as in `prefdisco leaderboard DIR`."),
        name: Optional[str] = typer.Option(None, "--name", help="Registry name (default: the candidate's name)."),
        force: bool = typer.Option(False, "--force", help="Overwrite an earlier promotion; promote unevaluated code."),
        as_json: bool = typer.Option(False, "--json", help="Print the written paths as JSON."),
    ) -> None:
        """Add a campaign's candidate to candidate_losses/discovered/ with its provenance (campaign, scores, date)."""
        from candidate_losses import list_losses
        from candidate_losses.registry import DISCOVERED_DIR
        from discovery.review.export import promote_loss

        exportable = candidate_from_campaign(campaign_dir, candidate_id, name=name)
        _check_status(exportable, force)
        _static_check(exportable, force)
        registered = {spec.name for spec in list_losses()}
        written = promote_loss(exportable, DISCOVERED_DIR, force=force, registered_names=registered)
        if as_json:
            typer.echo(json.dumps({**written.to_dict(), "name": exportable.name}))
        else:
            typer.echo(f"promoted as {exportable.name!r}: {written.module} (+ {Path(written.sidecar or '').name})")
