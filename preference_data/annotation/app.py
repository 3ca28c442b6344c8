"""FastAPI web app: annotator pages (per-annotator link), a JSON API, and an admin view per project.

Server-rendered jinja2 pages; one item at a time; responses shown side by side in an order
randomised per assignment and recorded. A token is the only credential: an unknown token gets
401, an expired, revoked or withdrawn one 403, and neither sees any project content. One server
may serve every project in its database (tokens are unique across projects) or just one.

Hardening: every response carries a strict Content-Security-Policy (scripts and styles only from
/static, no inline script), X-Frame-Options DENY and nosniff; request bodies are capped in size
and JSON bodies in nesting depth; tokens in URLs are redacted from uvicorn's access log.
"""

from __future__ import annotations

import hmac
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session

from preference_data.annotation import store
from preference_data.annotation.admin import admin_summary, disputed_items
from preference_data.annotation.assignment import (annotator_state, current_assignment, next_assignment,
                                                   skip_assignment, slot_counts)
from preference_data.annotation.db import session_factory
from preference_data.annotation.hygiene import (MAX_BODY_BYTES, SECURITY_HEADERS, Denied, install_log_redaction,
                                                read_json)
from preference_data.annotation.judging import MAX_TEXT, SubmissionError, answers_from_form, record_submission
from preference_data.annotation.models import (Adjudication, Annotator, Assignment, Dimension, Item,
                                               Project, utcnow)
from preference_data.annotation.render import pygments_css, render_text

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
STATIC = Path(__file__).parent / "static"
_DENIED = {"unknown": (401, "This link is not valid."),
           "expired": (403, "This link has expired. Ask the researcher for a new one."),
           "revoked": (403, "This link has been withdrawn."),
           "withdrawn": (403, "You withdrew from this study and your answers were deleted.")}
_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9_.@-]{1,200}$")


# ---------------------------------------------------------------- views shared by pages and API
def _ranked(d: Dimension, responses: list[dict[str, Any]], answers: dict[str, str]) -> tuple[list, bool]:
    ranks = {}
    for r in responses:
        v = answers.get(f"rank.{d.name}.{r['response_id']}", "")
        if v.isdigit():
            ranks[r["response_id"]] = int(v)
    if len(ranks) == len(responses):
        return sorted(responses, key=lambda r: ranks[r["response_id"]]), True
    return list(responses), False


def item_view(s: Session, project: Project, asg: Assignment, answers: dict[str, str] | None = None,
              markdown: bool = True) -> dict[str, Any]:
    item = s.get(Item, asg.item_id)
    assert item is not None
    by_id = {r.id: r for r in item.responses}
    shown = [{"response_id": rid, "text": by_id[rid].text, "position": i + 1,
              "html": render_text(by_id[rid].text, markdown)} for i, rid in enumerate(asg.display_order)]
    answers = answers or {}
    dims = []
    for d in project.dimensions:
        order, ranked = _ranked(d, shown, answers)
        dims.append({"name": d.name, "description": d.description, "scale": d.scale, "min": d.likert_min,
                     "max": d.likert_max, "required": d.required, "ranked_order": order, "is_ranked": ranked})
    messages = [{**m, "html": render_text(m["content"], markdown)} for m in item.messages or []]
    return {"item_id": item.id, "prompt": item.prompt, "messages": messages or None,
            "prompt_html": render_text(item.prompt, markdown), "responses": shown, "dimensions": dims}


def api_item(view: dict[str, Any]) -> dict[str, Any]:
    """The JSON form of `item_view` (no HTML)."""
    return {"item_id": view["item_id"], "prompt": view["prompt"],
            "messages": [{"role": m["role"], "content": m["content"]} for m in view["messages"] or []] or None,
            "responses": [{k: r[k] for k in ("response_id", "text", "position")} for r in view["responses"]],
            "dimensions": [{k: d[k] for k in ("name", "description", "scale", "min", "max", "required")}
                           for d in view["dimensions"]]}


def progress(s: Session, project: Project, annotator: Annotator) -> dict[str, int]:
    mine = s.execute(select(Assignment.status, Assignment.item_id)
                     .where(Assignment.annotator_id == annotator.id)).all()
    done = sum(1 for st, _ in mine if st == "submitted")
    touched = {i for _, i in mine}
    counts = slot_counts(s, project, store.project_spec(project), utcnow())
    items = s.scalars(select(Item.id).where(Item.project_id == project.id, Item.kind == "regular")).all()
    open_items = sum(1 for i in items if i not in touched and counts[i].submitted < project.overlap)
    return {"done": done, "open": open_items}


def locked_attributes(s: Session, spec: Any, annotator: Annotator) -> set[str]:
    """Attributes the annotator may not change: researcher-preset ones, those the spec does not
    open to self-report, and the quota attribute once they have started (changing it then would
    let a quota-blocked annotator take a slot reserved for another group)."""
    locked = set(annotator.preset_keys or []) | {a.name for a in spec.attributes if not a.self_report}
    if spec.quotas.attribute and spec.quotas.per_item:
        started = annotator.consent or s.scalar(
            select(Assignment.id).where(Assignment.annotator_id == annotator.id).limit(1)) is not None
        if started:
            locked.add(spec.quotas.attribute)
    return locked


# ---------------------------------------------------------------- the app
def create_app(db_url: str, project_name: str | None = None) -> FastAPI:
    """The app for one project (`project_name`) or for every project in the database (None)."""
    Session_ = session_factory(db_url)
    if project_name is not None:
        with Session_() as s:
            store.get_project(s, project_name)  # fail fast on a wrong project name
    install_log_redaction()
    app = FastAPI(title="prefdisco annotation", docs_url=None, redoc_url=None, openapi_url=None)
    css = (STATIC / "annotate.css").read_text() + "\n" + pygments_css()
    js = (STATIC / "annotate.js").read_text()

    @app.middleware("http")
    async def hygiene(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            response: Response = JSONResponse({"error": f"body larger than {MAX_BODY_BYTES} bytes"}, 413)
        elif request.method == "POST" and not length.isdigit():  # a chunked body could not be capped
            response = JSONResponse({"error": "send a Content-Length header"}, 411)
        else:
            response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    @app.exception_handler(Denied)
    def _denied(request: Request, exc: Denied) -> Response:
        path = request.url.path
        if path.startswith("/api/") or (path.startswith("/admin/")
                                        and path.endswith((".json", ".jsonl", ".parquet", ".csv"))):
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        return page(request, "error.html", {"message": exc.message, "back": None}, exc.status)

    def page(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, name, {"project_title": "prefdisco annotation", **ctx},
                                          status_code=status, headers={"Cache-Control": "no-store"})

    def load(s: Session, token: str) -> tuple[Project, Annotator]:
        fixed = store.get_project(s, project_name) if project_name is not None else None
        annotator, why = store.annotator_for_token(s, fixed, token)
        if annotator is None:
            raise Denied(*_DENIED[why])
        project = fixed or s.get(Project, annotator.project_id)
        assert project is not None
        return project, annotator

    def admin(s: Session, token: str) -> Project:
        h = store.hash_token(token)
        q = select(Project).where(Project.admin_token_hash == h)
        if project_name is not None:
            q = q.where(Project.name == project_name)
        project = s.scalar(q)
        if project is None or not hmac.compare_digest(h, project.admin_token_hash):
            raise Denied(401, "This admin link is not valid.")
        return project

    def title(project: Project) -> str:
        return project.title or project.name

    def done_page(request: Request, s: Session, project: Project, annotator: Annotator, token: str) -> HTMLResponse:
        spec = store.project_spec(project)
        state = annotator_state(s, project, spec, annotator)
        prog = progress(s, project, annotator)
        code = spec.crowd.completion_code if state.qualified is not False and prog["done"] > 0 else ""
        url = spec.crowd.completion_url.replace("{code}", code) if code and spec.crowd.completion_url else ""
        return page(request, "done.html", {"progress": prog, "token": token, "state": state,
                                           "completion_code": code, "completion_url": url,
                                           "project_title": title(project)})

    # ------------------------------------------------------------ static
    @app.get("/static/annotate.css")
    def static_css() -> Response:
        return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=3600"})

    @app.get("/static/annotate.js")
    def static_js() -> Response:
        return Response(js, media_type="text/javascript", headers={"Cache-Control": "max-age=3600"})

    # ------------------------------------------------------------ annotator pages
    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        return page(request, "error.html", {"message": "Open the personal link you were given.",
                                            "back": None}, 401)

    @app.get("/join/{join_token}")
    def join(request: Request, join_token: str) -> Response:
        with Session_() as s:
            project = s.scalar(select(Project).where(Project.join_token_hash == store.hash_token(join_token)))
            if project is None or (project_name is not None and project.name != project_name):
                raise Denied(401, "This study link is not valid.")
            param = store.project_spec(project).crowd.id_param
            external = request.query_params.get(param, "")
            if not _EXTERNAL_ID.match(external):
                raise Denied(400, f"Open this study from the platform that sent you (the link needs ?{param}=...).")
            joined = store.join_annotator(s, join_token, external)
            if joined is None:
                raise Denied(401, "This study link is not valid.")
            if not joined[1]:
                raise Denied(403, "You have already withdrawn from this study.")
        return RedirectResponse(f"/a/{joined[1]}", status_code=303)

    @app.get("/a/{token}", response_class=HTMLResponse)
    def welcome(request: Request, token: str) -> HTMLResponse:
        with Session_() as s:
            project, annotator = load(s, token)
            spec = store.project_spec(project)
            return page(request, "welcome.html", {
                "token": token, "title": title(project), "project_title": title(project),
                "guidelines_html": render_text(project.guidelines or "Read each prompt and the responses, "
                                               "then answer the questions.", spec.markdown),
                "attributes": spec.attributes, "locked": locked_attributes(s, spec, annotator),
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
            locked = locked_attributes(s, spec, annotator)
            attrs = dict(annotator.attributes or {})
            for a in spec.attributes:
                if a.name in locked or form.get(f"attr.{a.name}") is None:
                    continue
                v = str(form.get(f"attr.{a.name}", "")).strip()[:200]
                if v and (not a.values or v in a.values):
                    attrs[a.name] = v
                elif v == "":
                    attrs.pop(a.name, None)  # "prefer not to say"
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
            spec = store.project_spec(project)
            asg = next_assignment(s, project, spec, annotator)
            if asg is None:
                return done_page(request, s, project, annotator, token)
            return page(request, "item.html", {"token": token, "project_title": title(project),
                                               "item": item_view(s, project, asg, None, spec.markdown),
                                               "progress": progress(s, project, annotator),
                                               "answers": {}, "error": None, "max_text": MAX_TEXT})

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
                s.rollback()
                asg = current_assignment(s, annotator)
                if exc.status == 422 and asg is not None and asg.item_id == item_id:
                    # Show the same form again with every answer kept and the problem named.
                    spec = store.project_spec(project)
                    return page(request, "item.html", {
                        "token": token, "project_title": title(project),
                        "item": item_view(s, project, asg, fields, spec.markdown),
                        "progress": progress(s, project, annotator), "answers": fields,
                        "error": exc.message, "max_text": MAX_TEXT}, 422)
                return page(request, "error.html", {"message": exc.message,
                                                    "back": f"/a/{token}/item"}, exc.status)
        return RedirectResponse(f"/a/{token}/item", status_code=303)

    @app.post("/a/{token}/item/{item_id}/skip")
    def skip_form(request: Request, token: str, item_id: str) -> Response:
        with Session_() as s:
            _, annotator = load(s, token)
            skip_assignment(s, annotator, item_id)
        return RedirectResponse(f"/a/{token}/item", status_code=303)

    @app.post("/a/{token}/withdraw")
    async def withdraw_form(request: Request, token: str) -> Response:
        form = await request.form()
        with Session_() as s:
            project, annotator = load(s, token)
            if form.get("confirm") != "yes":
                return page(request, "error.html", {"message": "Tick the box to confirm the deletion.",
                                                    "back": f"/a/{token}"}, 422)
            deleted = store.withdraw_annotator(s, annotator)
        return page(request, "withdrawn.html", {"deleted": deleted})

    # ------------------------------------------------------------ JSON API (scripts, load test)
    @app.get("/api/a/{token}/next")
    def api_next(token: str) -> JSONResponse:
        with Session_() as s:
            project, annotator = load(s, token)
            if not annotator.consent:
                return JSONResponse({"error": "consent not given; open your link first"}, 403)
            spec = store.project_spec(project)
            asg = next_assignment(s, project, spec, annotator)
            if asg is None:
                return JSONResponse({"item": None})
            return JSONResponse({"item": api_item(item_view(s, project, asg, None, False))})

    @app.post("/api/a/{token}/consent")
    async def api_consent(request: Request, token: str) -> JSONResponse:
        with Session_() as s:
            load(s, token)  # an unknown token learns nothing, whatever the body
        body = await read_json(request)
        if not isinstance(body, dict) or body.get("consent") is not True:
            return JSONResponse({"error": "send {\"consent\": true}"}, 422)
        with Session_() as s:
            _, annotator = load(s, token)
            annotator.consent, annotator.consent_at = True, utcnow()
            s.commit()
        return JSONResponse({"ok": True})

    @app.post("/api/a/{token}/withdraw")
    async def api_withdraw(request: Request, token: str) -> JSONResponse:
        body = await read_json(request)
        if not isinstance(body, dict) or body.get("confirm") is not True:
            return JSONResponse({"error": "send {\"confirm\": true} to delete all your answers"}, 422)
        with Session_() as s:
            _, annotator = load(s, token)
            deleted = store.withdraw_annotator(s, annotator)
        return JSONResponse({"ok": True, "deleted_judgments": deleted})

    @app.post("/api/a/{token}/items/{item_id}")
    async def api_submit(request: Request, token: str, item_id: str) -> JSONResponse:
        body = await read_json(request)
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

    # ------------------------------------------------------------ admin (one view per project)
    @app.get("/admin/{token}", response_class=HTMLResponse)
    def admin_page(request: Request, token: str) -> HTMLResponse:
        with Session_() as s:
            project = admin(s, token)
            return page(request, "admin.html", {"token": token, "project_title": title(project),
                                                **admin_summary(s, db_url, project)})

    @app.get("/admin/{token}/status.json")
    def admin_status(token: str) -> JSONResponse:
        with Session_() as s:
            project = admin(s, token)
            return JSONResponse(admin_summary(s, db_url, project))

    @app.get("/admin/{token}/review", response_class=HTMLResponse)
    def review_page(request: Request, token: str) -> HTMLResponse:
        with Session_() as s:
            project = admin(s, token)
            markdown = store.project_spec(project).markdown
        disputes = disputed_items(store.export_judgments(db_url, project.name))
        for d in disputes:
            d["prompt_html"] = render_text(d["prompt"], markdown)
            d["responses"] = [{**r, "html": render_text(r["text"], markdown),
                               "votes": d["votes"].get(r["response_id"], 0)} for r in d["responses"]]
        return page(request, "review.html", {"token": token, "project": project.name,
                                             "project_title": title(project), "disputed": disputes})

    @app.post("/admin/{token}/review/{item_id}/{dimension}")
    async def adjudicate(request: Request, token: str, item_id: str, dimension: str) -> Response:
        form = await request.form()
        with Session_() as s:
            project = admin(s, token)
            item = s.get(Item, item_id)
            dim = next((d for d in project.dimensions if d.name == dimension), None)
            chosen = str(form.get("chosen", ""))
            if item is None or item.project_id != project.id or dim is None:
                raise Denied(404, "No such item or dimension in this project.")
            if chosen not in {r.id for r in item.responses}:
                raise Denied(422, "Choose one of the item's responses.")
            row = s.scalar(select(Adjudication).where(Adjudication.item_id == item_id,
                                                      Adjudication.dimension_id == dim.id))
            if row is None:
                row = Adjudication(item_id=item_id, dimension_id=dim.id, chosen_response_id=chosen)
                s.add(row)
            row.chosen_response_id, row.note = chosen, str(form.get("note", ""))[:2000]
            row.created_at = utcnow()
            s.commit()
        return RedirectResponse(f"/admin/{token}/review", status_code=303)

    @app.get("/admin/{token}/export.{fmt}")
    def admin_export(token: str, fmt: str) -> Response:
        import tempfile
        with Session_() as s:
            project = admin(s, token)
        media = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet",
                 "csv": "text/csv"}
        if fmt not in media:
            return JSONResponse({"error": "use export.jsonl, export.parquet or export.csv"}, 404)
        rows = store.export_judgments(db_url, project.name)
        with tempfile.TemporaryDirectory() as d:
            path = store.write_export(rows, Path(d) / f"{project.name}.{fmt}")
            data = path.read_bytes()
        return Response(data, media_type=media[fmt], headers={
            "Content-Disposition": f'attachment; filename="{project.name}-judgments.{fmt}"'})

    return app
