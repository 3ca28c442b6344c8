"""FastAPI web app: annotator pages (per-annotator link), a JSON API, and an admin page.

Server-rendered jinja2 pages; one item at a time; responses shown side by side in an order
randomised per assignment and recorded. A token is the only credential: an unknown token gets
401, an expired or revoked one 403, and neither sees any project content.
"""

from __future__ import annotations

import hmac
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session

from preference_data.annotation import store
from preference_data.annotation.agreement import agreement_by_dimension
from preference_data.annotation.assignment import next_assignment, skip_assignment, slot_counts
from preference_data.annotation.db import session_factory
from preference_data.annotation.judging import (SubmissionError, answers_from_form,
                                                record_submission)
from preference_data.annotation.models import Annotator, Assignment, Item, Project, utcnow

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
_DENIED = {"unknown": (401, "This link is not valid."),
           "expired": (403, "This link has expired. Ask the researcher for a new one."),
           "revoked": (403, "This link has been withdrawn.")}


class Denied(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


def create_app(db_url: str, project_name: str) -> FastAPI:
    """The app for one project in one database (the CLI's `serve` runs it under uvicorn)."""
    Session_ = session_factory(db_url)
    with Session_() as s:
        store.get_project(s, project_name)  # fail fast on a wrong project name
    app = FastAPI(title=f"prefdisco annotation: {project_name}", docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.exception_handler(Denied)
    def _denied(request: Request, exc: Denied) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        return page(request, "error.html", {"message": exc.message, "back": None}, exc.status)

    def page(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, name, {"project_title": project_name, **ctx},
                                          status_code=status,
                                          headers={"Cache-Control": "no-store",
                                                   "Referrer-Policy": "no-referrer"})

    def load(s: Session, token: str) -> tuple[Project, Annotator]:
        project = store.get_project(s, project_name)
        annotator, why = store.annotator_for_token(s, project, token)
        if annotator is None:
            raise Denied(*_DENIED[why])
        return project, annotator

    def admin(s: Session, token: str) -> Project:
        project = store.get_project(s, project_name)
        if not hmac.compare_digest(store.hash_token(token), project.admin_token_hash):
            raise Denied(401, "This admin link is not valid.")
        return project

    def item_view(s: Session, project: Project, annotator: Annotator, asg: Assignment) -> dict[str, Any]:
        item = s.get(Item, asg.item_id)
        assert item is not None
        by_id = {r.id: r for r in item.responses}
        shown = [{"response_id": rid, "text": by_id[rid].text, "position": i + 1}
                 for i, rid in enumerate(asg.display_order)]
        dims = [{"name": d.name, "description": d.description, "scale": d.scale,
                 "min": d.likert_min, "max": d.likert_max, "required": d.required}
                for d in project.dimensions]
        return {"item_id": item.id, "prompt": item.prompt, "responses": shown, "dimensions": dims}

    def progress(s: Session, project: Project, annotator: Annotator) -> dict[str, int]:
        mine = s.execute(select(Assignment.status, Assignment.item_id)
                         .where(Assignment.annotator_id == annotator.id)).all()
        done = sum(1 for st, _ in mine if st == "submitted")
        touched = {i for _, i in mine}
        counts = slot_counts(s, project, store.project_spec(project), utcnow())
        items = s.scalars(select(Item.id).where(Item.project_id == project.id)).all()
        open_items = sum(1 for i in items if i not in touched and counts[i].submitted < project.overlap)
        return {"done": done, "open": open_items}

    # ------------------------------------------------------------ annotator pages
    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        return page(request, "error.html", {"message": "Open the personal link you were given.",
                                            "back": None}, 401)

    @app.get("/a/{token}", response_class=HTMLResponse)
    def welcome(request: Request, token: str) -> HTMLResponse:
        with Session_() as s:
            project, annotator = load(s, token)
            spec = store.project_spec(project)
            return page(request, "welcome.html", {
                "token": token, "title": project.title or project.name,
                "guidelines": project.guidelines, "attributes": spec.attributes,
                "current": annotator.attributes or {}, "consent": annotator.consent,
                "dimensions": project.dimensions})

    @app.post("/a/{token}/start")
    async def start(request: Request, token: str) -> Response:
        form = await request.form()
        with Session_() as s:
            project, annotator = load(s, token)
            if form.get("consent") != "yes":
                return page(request, "error.html", {
                    "message": "Please tick the consent box to take part.",
                    "back": f"/a/{token}"}, 422)
            spec = store.project_spec(project)
            attrs = dict(annotator.attributes or {})
            for a in spec.attributes:
                v = str(form.get(f"attr.{a.name}", "")).strip()
                if v and (not a.values or v in a.values):
                    attrs[a.name] = v
                elif v == "" and a.name in attrs and form.get(f"attr.{a.name}") is not None:
                    attrs.pop(a.name)  # "prefer not to say"
            annotator.attributes = attrs
            annotator.consent = True
            annotator.consent_at = annotator.consent_at or utcnow()
            s.commit()
        return RedirectResponse(f"/a/{token}/item", status_code=303)

    @app.get("/a/{token}/item", response_class=HTMLResponse)
    def show_item(request: Request, token: str) -> Response:
        with Session_() as s:
            project, annotator = load(s, token)
            if not annotator.consent:
                return RedirectResponse(f"/a/{token}", status_code=303)
            asg = next_assignment(s, project, store.project_spec(project), annotator)
            prog = progress(s, project, annotator)
            if asg is None:
                return page(request, "done.html", {"progress": prog, "token": token})
            return page(request, "item.html", {"token": token, "item": item_view(s, project, annotator, asg),
                                               "progress": prog})

    @app.post("/a/{token}/item/{item_id}")
    async def submit_form(request: Request, token: str, item_id: str) -> Response:
        form = await request.form()
        fields = {k: str(v) for k, v in form.items()}
        with Session_() as s:
            project, annotator = load(s, token)
            try:
                item = s.get(Item, item_id)
                rids = [r.id for r in item.responses] if item and item.project_id == project.id else []
                answers = answers_from_form(fields, list(project.dimensions), rids)
                t = fields.get("time_spent_s")
                record_submission(s, project, annotator, item_id, answers, fields.get("comment", ""),
                                  float(t) if t and t.replace(".", "", 1).isdigit() else None)
            except SubmissionError as exc:
                return page(request, "error.html", {"message": exc.message,
                                                    "back": f"/a/{token}/item"}, exc.status)
        return RedirectResponse(f"/a/{token}/item", status_code=303)

    @app.post("/a/{token}/item/{item_id}/skip")
    def skip_form(request: Request, token: str, item_id: str) -> Response:
        with Session_() as s:
            _, annotator = load(s, token)
            skip_assignment(s, annotator, item_id)
        return RedirectResponse(f"/a/{token}/item", status_code=303)

    # ------------------------------------------------------------ JSON API (scripts, load test)
    @app.get("/api/a/{token}/next")
    def api_next(token: str) -> JSONResponse:
        with Session_() as s:
            project, annotator = load(s, token)
            if not annotator.consent:
                return JSONResponse({"error": "consent not given; open your link first"}, 403)
            asg = next_assignment(s, project, store.project_spec(project), annotator)
            if asg is None:
                return JSONResponse({"item": None})
            return JSONResponse({"item": item_view(s, project, annotator, asg)})

    @app.post("/api/a/{token}/consent")
    async def api_consent(request: Request, token: str) -> JSONResponse:
        body = await request.json()
        with Session_() as s:
            _, annotator = load(s, token)
            if body.get("consent") is not True:
                return JSONResponse({"error": "send {\"consent\": true}"}, 422)
            annotator.consent, annotator.consent_at = True, utcnow()
            s.commit()
        return JSONResponse({"ok": True})

    @app.post("/api/a/{token}/items/{item_id}")
    async def api_submit(request: Request, token: str, item_id: str) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "body must be JSON"}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be a JSON object"}, 400)
        with Session_() as s:
            project, annotator = load(s, token)
            try:
                js = record_submission(s, project, annotator, item_id, body.get("answers"),
                                       body.get("comment", ""), body.get("time_spent_s"))
            except SubmissionError as exc:
                return JSONResponse({"error": exc.message}, exc.status)
            return JSONResponse({"ok": True, "judgment_ids": [j.id for j in js]})

    @app.post("/api/a/{token}/items/{item_id}/skip")
    def api_skip(token: str, item_id: str) -> JSONResponse:
        with Session_() as s:
            _, annotator = load(s, token)
            if not skip_assignment(s, annotator, item_id):
                return JSONResponse({"error": "this item is not open for you"}, 409)
        return JSONResponse({"ok": True})

    # ------------------------------------------------------------ admin
    @app.get("/admin/{token}", response_class=HTMLResponse)
    def admin_page(request: Request, token: str) -> HTMLResponse:
        with Session_() as s:
            project = admin(s, token)
            return page(request, "admin.html", {"token": token, **admin_summary(s, db_url, project)})

    @app.get("/admin/{token}/status.json")
    def admin_status(token: str) -> JSONResponse:
        with Session_() as s:
            project = admin(s, token)
            return JSONResponse(admin_summary(s, db_url, project))

    @app.get("/admin/{token}/export.{fmt}")
    def admin_export(token: str, fmt: str) -> Response:
        import tempfile
        with Session_() as s:
            admin(s, token)
        if fmt not in ("jsonl", "parquet"):
            return JSONResponse({"error": "use export.jsonl or export.parquet"}, 404)
        rows = store.export_judgments(db_url, project_name)
        with tempfile.TemporaryDirectory() as d:
            path = store.write_export(rows, Path(d) / f"{project_name}.{fmt}")
            data = path.read_bytes()
        media = "application/x-ndjson" if fmt == "jsonl" else "application/vnd.apache.parquet"
        return Response(data, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="{project_name}-judgments.{fmt}"'})

    return app


def admin_summary(s: Session, db_url: str, project: Project) -> dict[str, Any]:
    """Progress per annotator and per group, and agreement per dimension, for the admin page."""
    spec = store.project_spec(project)
    status = store.project_status(db_url, project.name)
    annotators = s.scalars(select(Annotator).where(Annotator.project_id == project.id)
                           .order_by(Annotator.created_at)).all()
    rows = store.export_judgments(db_url, project.name)
    asgs = s.execute(select(Assignment.annotator_id, Assignment.status, Assignment.item_id)
                     .join(Annotator, Annotator.id == Assignment.annotator_id)
                     .where(Annotator.project_id == project.id)).all()
    per_ann: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for aid, st, _ in asgs:
        per_ann[aid][st] += 1
    times: dict[str, dict[str, float]] = defaultdict(dict)
    for r in rows:
        times[r["annotator_id"]][r["item_id"]] = r["time_spent_s"]
    people = [{"id": a.id, "label": a.label, "attributes": a.attributes or {}, "consent": a.consent,
               "submitted": per_ann[a.id]["submitted"], "skipped": per_ann[a.id]["skipped"],
               "open": per_ann[a.id]["assigned"],
               "median_time_s": round(statistics.median(times[a.id].values()), 1) if times[a.id] else None}
              for a in annotators]
    groups = []
    total_sub = sum(p["submitted"] for p in people) or 1
    for attr in spec.attributes:
        values = list(attr.values) + sorted({str(p["attributes"].get(attr.name)) for p in people
                                             if p["attributes"].get(attr.name) not in attr.values
                                             and p["attributes"].get(attr.name) is not None})
        for v in values + [None]:
            members = [p for p in people if p["attributes"].get(attr.name) == v]
            if v is None and not members:
                continue
            sub = sum(p["submitted"] for p in members)
            groups.append({"attribute": attr.name, "value": v if v is not None else "(not given)",
                           "annotators": len(members), "submitted": sub,
                           "share": round(sub / total_sub, 3),
                           "target_share": spec.population_shares.get(attr.name, {}).get(v)})
    agreement = agreement_by_dimension(rows)
    ordered = {d.name: agreement[d.name] for d in project.dimensions if d.name in agreement}
    return {"status": status, "annotators": people, "groups": groups, "agreement": ordered}
