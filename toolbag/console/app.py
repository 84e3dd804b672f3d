"""The console's routes: sign-in, the pages, and the actions behind their forms.

Every request re-reads the signed-in key from Redis (a revoked key is signed out on its next click); every
form carries the session's CSRF token; every action checks the role on the server, goes through the same
library call as the CLI (``Client.cancel``, :class:`~toolbag.escalations.Inbox`, the key stores) and is
written to the audit stream with who did it. Pages never show a secret except a new key, once, to the admin
who created it. User and model text is data: Jinja's autoescape is on for every template.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from toolbag.api.keys import ApiKeyError, KeyStore
from toolbag.attempt.deltas import AttemptEnd, TextDelta
from toolbag.client import Client
from toolbag.config import TIERS
from toolbag.console import actions
from toolbag.console.bulk import MAX_UPLOAD_BYTES, BulkRunError, BulkRuns
from toolbag.console.charts import bar_chart, share
from toolbag.console.evals import EvalRuns
from toolbag.console.fleet import SERIES, fleet_view
from toolbag.console.forms import FormField, output_fields, read_output
from toolbag.console.joblist import STATUSES, JobFilter, search_jobs, timeline
from toolbag.console.keys import ROLES, ConsoleKey, ConsoleKeyError, ConsoleKeyStore, Role, may
from toolbag.console.permissions import BUILTIN_TOOLS, current_policy, explain, matrix
from toolbag.errors import ToolbagError
from toolbag.escalations import Inbox, InboxError
from toolbag.gateway.audit import AuditFilter, RedisAuditReader
from toolbag.jobs import JobNotFound, path_of

__all__ = ["SECRET_ENV", "console_app"]

SECRET_ENV = "TOOLBAG_CONSOLE_SECRET"
GRAFANA_ENV = "TOOLBAG_GRAFANA_URL"  # the fleet dashboard, linked from the Fleet page when set
SESSION_COOKIE = "toolbag_console"
SESSION_MAX_AGE_S = 8 * 3600
MAX_FORM_BYTES = 1_000_000
STREAM_MAX_S = 600.0  # a job page's live text stream ends after this; the page reloads
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_:.")

log = logging.getLogger("toolbag.console")

Handler = Callable[[Request], Awaitable[Response]]


class Refused(ToolbagError):
    """A request the console answers with a page saying why (status and message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _session_secret(client: Client) -> str:
    """``$TOOLBAG_CONSOLE_SECRET``, else one random secret per fleet kept in Redis, so every replica signs
    sessions alike and a restart keeps people signed in."""
    given = os.environ.get(SECRET_ENV)
    if given:
        return given
    key = client.store.keys.console_session_secret
    client.store.redis.set(key, secrets.token_urlsafe(48), nx=True)
    raw = client.store.redis.get(key)
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _time(ms: int | float | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(float(ms) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _ago(ms: int | float | None) -> str:
    if not ms:
        return ""
    seconds = max(0.0, time.time() - float(ms) / 1000)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) if not isinstance(value, str) else value


def _job_id(value: str) -> str:
    if not value or len(value) > 128 or not set(value) <= _ID_CHARS:
        raise Refused(404, "no such job")
    return value


class Console:
    """The console over one :class:`Client` (its config, store and skills)."""

    def __init__(self, client: Client, grafana_url: str | None = None, skills_dir: Path | None = None,
                 runs_dir: Path | None = None) -> None:
        self.client = client
        self._skills_dir = skills_dir
        self.bulk = BulkRuns(client, runs_dir)
        self.evals = EvalRuns(client)
        self.store = client.store
        self.config = client.config
        self.grafana_url = grafana_url
        self.console_keys = ConsoleKeyStore(self.store.redis, self.store.keys)
        self.api_keys = KeyStore(self.store.redis, self.store.keys)
        self.inbox = Inbox(self.config, self.store, client.router)
        self.env = Environment(loader=PackageLoader("toolbag.console", "templates"),
                               autoescape=select_autoescape(default=True, default_for_string=True))
        self.env.filters.update(time=_time, ago=_ago, pretty=_pretty, path=path_of)
        self.env.globals.update(share=share)

    # -- plumbing ---------------------------------------------------------------------------------------

    def csrf(self, request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str) or len(token) < 20:
            token = secrets.token_urlsafe(32)
            request.session["csrf"] = token
        return token

    def user(self, request: Request) -> ConsoleKey | None:
        digest = request.session.get("key")
        if not isinstance(digest, str) or len(digest) != 64:
            return None
        return self.console_keys.by_digest(digest)

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        base = request.scope.get("root_path", "")
        user = context.pop("user", None)
        if user is None and not context.pop("anonymous", False):
            user = self.user(request)
        body = self.env.get_template(template).render(
            base=base, user=user, csrf=self.csrf(request), roles=ROLES, may=lambda r: user is not None and
            may(user.role, r), path=request.url.path, **context)
        return HTMLResponse(body, status, headers={"cache-control": "no-store", "x-frame-options": "DENY",
                                                   "referrer-policy": "same-origin",
                                                   "content-security-policy":
                                                       "default-src 'self'; style-src 'self'; img-src 'self' data:; "
                                                       "script-src 'self'; frame-ancestors 'none'"})

    async def form(self, request: Request) -> dict[str, str]:
        """The posted form as text fields, after the CSRF check; uploads are refused here."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
            raise Refused(413, f"the form is larger than {MAX_FORM_BYTES} bytes")
        data = await request.form(max_files=0, max_fields=200)
        fields = {k: v for k, v in data.items() if isinstance(v, str)}
        sent = fields.get("csrf", "")
        expected = request.session.get("csrf")
        if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Refused(403, "the form expired or did not come from this console (CSRF check failed); "
                               "reload the page and try again")
        return fields

    def guard(self, needed: Role, handler: Callable[[Request, ConsoleKey], Awaitable[Response]]) -> Handler:
        """Signed in, and with ``needed`` or a higher role; else the sign-in page or a refusal."""

        async def run(request: Request) -> Response:
            try:
                user = self.user(request)
                if user is None:
                    base = request.scope.get("root_path", "")
                    return RedirectResponse(f"{base}/login", 303)
                if not may(user.role, needed):
                    if request.method == "POST":
                        actions.record(self.store, user.name, "refused", outcome="denied",
                                       detail=f"{request.url.path} needs {needed}, has {user.role}")
                    raise Refused(403, f"your role ({user.role}) cannot do this; it needs {needed}")
                return await handler(request, user)
            except Refused as err:
                return self.page(request, "refused.html", err.status, message=err.message)

        return run

    # -- sign-in ----------------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        return self.page(request, "login.html", user=None, errors={})

    async def login(self, request: Request) -> Response:
        try:
            fields = await self.form(request)
        except Refused as err:
            return self.page(request, "login.html", err.status, errors={"key": err.message})
        secret = fields.get("key", "").strip()
        key = self.console_keys.lookup(secret) if secret else None
        if key is None:
            message = "enter your console key" if not secret else "unknown or revoked console key"
            return self.page(request, "login.html", 400, errors={"key": message})
        request.session.clear()
        request.session.update({"key": _digest(secret), "csrf": secrets.token_urlsafe(32)})
        actions.record(self.store, key.name, "sign-in", detail=f"role {key.role}")
        return RedirectResponse(f"{request.scope.get('root_path', '')}/fleet", 303)

    async def logout(self, request: Request) -> Response:
        try:
            await self.form(request)
        except Refused as err:
            return self.page(request, "refused.html", err.status, message=err.message)
        request.session.clear()
        return RedirectResponse(f"{request.scope.get('root_path', '')}/login", 303)

    # -- pages ------------------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/fleet", 303)

    async def fleet(self, request: Request, user: ConsoleKey) -> Response:
        view = fleet_view(self.config, self.store, self.grafana_url)
        charts = {name: bar_chart(view.series[name]) for name in SERIES}
        return self.page(request, "fleet.html", user=user, view=view, charts=charts, series=SERIES)

    async def jobs(self, request: Request, user: ConsoleKey) -> Response:
        q = request.query_params
        errors: dict[str, str] = {}
        status = q.get("status", "")
        if status and status not in STATUSES:
            errors["status"] = f"unknown status; one of {', '.join(STATUSES)}"
        since_ms = 0
        hours = q.get("hours", "")
        if hours:
            try:
                value = float(hours)
                if not 0 < value <= 24 * 365:
                    raise ValueError
                since_ms = int((time.time() - value * 3600) * 1000)
            except ValueError:
                errors["hours"] = "a number of hours between 0 and 8760"
        flt = JobFilter(capability=q.get("capability", "")[:128], skill=q.get("skill", "")[:128],
                        status="" if "status" in errors else status, caller=q.get("caller", "")[:128],
                        since_ms=since_ms)
        found = search_jobs(self.store, flt) if not errors else None
        return self.page(request, "jobs.html", user=user, found=found, q=q, errors=errors, statuses=STATUSES,
                         capabilities=sorted(self.config.routes))

    def _job(self, job_id: str) -> tuple[Any, list[dict[str, Any]]]:
        try:
            return self.store.snapshot(_job_id(job_id))
        except JobNotFound:
            raise Refused(404, f"no job {job_id} (unknown id, or its record expired)") from None

    async def job(self, request: Request, user: ConsoleKey) -> Response:
        record, history = self._job(request.path_params["job_id"])
        return self.page(request, "job.html", user=user, job=record, history=timeline(record, history),
                         input=record.input_value() if record.input else None, output=record.output_value(),
                         result=record.result_value(), message=request.query_params.get("message", "")[:200])

    async def job_stream(self, request: Request, user: ConsoleKey) -> Response:
        """The job's text as its attempts stream it, as server-sent events: ``delta`` pieces, an ``end`` after
        each attempt, then ``done`` with the status (the page reloads to show the result)."""
        job_id = _job_id(request.path_params["job_id"])
        self._job(job_id)
        job = self.client.get(job_id)

        def events() -> Iterator[bytes]:
            try:
                for event in job.stream(timeout_s=STREAM_MAX_S):
                    if isinstance(event, TextDelta):
                        yield _sse("delta", {"text": event.text, "attempt": event.attempt, "model": event.model})
                    elif isinstance(event, AttemptEnd):
                        yield _sse("end", {"attempt": event.attempt, "model": event.model, "outcome": event.outcome,
                                           "ok": event.ok, "reason": event.reason[:500]})
            except TimeoutError:
                pass
            yield _sse("done", {"status": self.store.get(job_id).status.value})

        return StreamingResponse(iterate_in_threadpool(events()), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    async def cancel(self, request: Request, user: ConsoleKey) -> Response:
        await self.form(request)
        job_id = _job_id(request.path_params["job_id"])
        try:
            done = self.client.cancel(job_id)
        except JobNotFound:
            raise Refused(404, f"no job {job_id}") from None
        actions.record(self.store, user.name, "cancel", job_id=job_id, outcome="ok" if done else "already-finished")
        message = "cancelled" if done else "it had already finished"
        return RedirectResponse(f"{request.scope.get('root_path', '')}/jobs/{job_id}?message={message}", 303)

    # -- escalations ------------------------------------------------------------------------------------

    async def escalations(self, request: Request, user: ConsoleKey) -> Response:
        return self.page(request, "inbox.html", user=user, items=self.inbox.list(200),
                         message=request.query_params.get("message", "")[:200])

    def _skill_schema(self, job_id: str) -> tuple[str | None, Mapping[str, Any] | None]:
        record = self.store.get(job_id)
        if not record.skill:
            return None, None
        from toolbag.skills import SkillError, SkillLibrary, default_skills_dir

        try:
            return record.skill, SkillLibrary(default_skills_dir()).get(record.skill).output_schema
        except (SkillError, OSError):
            return record.skill, None

    def _escalation_page(self, request: Request, user: ConsoleKey, job_id: str, status: int = 200, *,
                         values: Mapping[str, str] | None = None, errors: Mapping[str, str] | None = None,
                         fields: list[FormField] | None = None) -> Response:
        try:
            item = self.inbox.show(job_id)
        except InboxError as err:
            raise Refused(404, str(err)) from None
        skill, schema = self._skill_schema(job_id)
        return self.page(request, "escalation.html", status, user=user, item=item, skill=skill,
                         fields=fields or output_fields(schema), values=values or {}, errors=errors or {},
                         models=sorted(self.config.models), record=self.store.get(job_id))

    async def escalation(self, request: Request, user: ConsoleKey) -> Response:
        return self._escalation_page(request, user, _job_id(request.path_params["job_id"]))

    def _done(self, request: Request, job_id: str, what: str) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/escalations?message={job_id}+{what}", 303)

    async def resolve(self, request: Request, user: ConsoleKey) -> Response:
        fields_in = await self.form(request)
        job_id = _job_id(request.path_params["job_id"])
        _skill, schema = self._skill_schema(job_id)
        fields = output_fields(schema)
        value, errors = read_output(fields, fields_in, schema)
        if errors:
            return self._escalation_page(request, user, job_id, 400, values=fields_in, errors=errors, fields=fields)
        try:
            self.inbox.resolve(job_id, value, by=f"console:{user.name}")
        except InboxError as err:
            actions.record(self.store, user.name, "resolve", job_id=job_id, outcome="error", detail=str(err))
            raise Refused(409, str(err)) from None
        actions.record(self.store, user.name, "resolve", job_id=job_id)
        return self._done(request, job_id, "resolved")

    async def reject(self, request: Request, user: ConsoleKey) -> Response:
        fields_in = await self.form(request)
        job_id = _job_id(request.path_params["job_id"])
        reason = fields_in.get("reject_reason", "").strip()
        if not reason or len(reason) > 500:
            message = "a reason is required" if not reason else "at most 500 characters"
            return self._escalation_page(request, user, job_id, 400, values=fields_in,
                                         errors={"reject_reason": message})
        try:
            self.inbox.reject(job_id, reason, by=f"console:{user.name}")
        except InboxError as err:
            raise Refused(409, str(err)) from None
        actions.record(self.store, user.name, "reject", job_id=job_id, detail=reason)
        return self._done(request, job_id, "rejected")

    async def retry(self, request: Request, user: ConsoleKey) -> Response:
        fields_in = await self.form(request)
        job_id = _job_id(request.path_params["job_id"])
        model = fields_in.get("model", "").strip() or None
        if model is not None and model not in self.config.models:
            known = ", ".join(sorted(self.config.models))
            return self._escalation_page(request, user, job_id, 400, values=fields_in,
                                         errors={"model": f"unknown model; one of {known}"})
        try:
            target = self.inbox.retry(job_id, model, by=f"console:{user.name}")
        except InboxError as err:
            raise Refused(409, str(err)) from None
        actions.record(self.store, user.name, "retry", job_id=job_id, detail=f"on {target}")
        return self._done(request, job_id, f"queued+on+{target}")

    # -- skills -----------------------------------------------------------------------------------------

    def skills_dir(self) -> Path:
        from toolbag.skills import default_skills_dir

        return self._skills_dir or default_skills_dir()

    def _skill_folder(self, name: str) -> Path:
        root = self.skills_dir()
        if not name or name.startswith(".") or not set(name) <= _ID_CHARS or not (root / name).is_dir():
            raise Refused(404, f"no skill named {name!r} in {root}")
        return root / name

    async def skills(self, request: Request, user: ConsoleKey) -> Response:
        from toolbag.skills import validate_skill_dir

        root = self.skills_dir()
        rows = []
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() \
            else []
        for folder in folders:
            problems = validate_skill_dir(folder, capabilities=list(self.config.routes),
                                          route_targets=[*self.config.providers, *self.config.models])
            header = _header(folder)
            rows.append({"name": folder.name, "problems": len(problems), **header})
        return self.page(request, "skills.html", user=user, rows=rows, root=root)

    def _skill_page(self, request: Request, user: ConsoleKey, name: str, status: int = 200,
                    **context: Any) -> Response:
        from toolbag.console.skill_edit import read_files
        from toolbag.console.skill_view import VendorView, vendor_views
        from toolbag.skills import SkillError, load_skill

        folder = self._skill_folder(name)
        context.setdefault("texts", read_files(folder))
        context.setdefault("problems", {})
        case, views, cases = "", list[VendorView](), list[str]()
        try:
            skill = load_skill(folder)
        except SkillError:
            pass
        else:
            case, views = vendor_views(self.config, skill, request.query_params.get("case"))
            cases = [c.id for c in skill.evals]
        return self.page(request, "skill.html", status, user=user, name=name, header=_header(folder), case=case,
                         cases=cases, views=views, **context)

    async def skill(self, request: Request, user: ConsoleKey) -> Response:
        return self._skill_page(request, user, request.path_params["name"])

    def _targets(self) -> dict[str, list[str]]:
        return {"capabilities": list(self.config.routes),
                "route_targets": [*self.config.providers, *self.config.models]}

    async def skill_check(self, request: Request, user: ConsoleKey) -> Response:
        from toolbag.console.skill_edit import EDITABLE, SkillEditError, check

        fields = await self.form(request)
        name = request.path_params["name"]
        folder = self._skill_folder(name)
        texts = {n: fields.get(n, "") for n in EDITABLE}
        try:
            checked = check(folder, texts, **self._targets())
        except SkillEditError as err:
            return self._skill_page(request, user, name, 400, texts=texts, problems={"": [str(err)]})
        return self._skill_page(request, user, name, 200 if not checked.problems else 400, texts=texts,
                                problems=checked.by_file(), checked=not checked.problems)

    async def skill_problems(self, request: Request, user: ConsoleKey) -> Response:
        """The check as JSON for the page's as-you-type script: ``{"problems": {file: [lines]}}``."""
        from toolbag.console.skill_edit import EDITABLE, SkillEditError, check

        fields = await self.form(request)
        folder = self._skill_folder(request.path_params["name"])
        texts = {n: fields.get(n, "") for n in EDITABLE}
        try:
            checked = await run_in_threadpool(check, folder, texts, **self._targets())
        except SkillEditError as err:
            return JSONResponse({"problems": {"": [str(err)]}})
        return JSONResponse({"problems": checked.by_file()}, headers={"cache-control": "no-store"})

    async def skill_save(self, request: Request, user: ConsoleKey) -> Response:
        from toolbag.console.skill_edit import EDITABLE, SkillEditError, save

        fields = await self.form(request)
        name = request.path_params["name"]
        folder = self._skill_folder(name)
        texts = {n: fields.get(n, "") for n in EDITABLE}
        try:
            checked, saved = save(folder, texts, **self._targets())
        except SkillEditError as err:
            return self._skill_page(request, user, name, 400, texts=texts, problems={"": [str(err)]})
        if saved is None:
            return self._skill_page(request, user, name, 400, texts=texts, problems=checked.by_file())
        if saved.changed:
            actions.record(self.store, user.name, "skill-save", detail=f"{name} {saved.version_before} -> "
                                                                       f"{saved.version_after}")
        return self._skill_page(request, user, name, saved=saved)

    async def skill_evals(self, request: Request, user: ConsoleKey) -> Response:
        name = request.path_params["name"]
        self._skill_folder(name)
        return self.page(request, "evals.html", user=user, name=name, run=self.evals.get(name))

    async def skill_evals_start(self, request: Request, user: ConsoleKey) -> Response:
        from toolbag.skills import SkillError, load_skill

        await self.form(request)
        name = request.path_params["name"]
        try:
            load_skill(self._skill_folder(name))
        except SkillError as err:
            raise Refused(409, f"the saved skill does not load: {str(err).splitlines()[0]}") from None
        self.evals.start(name, user.name)
        actions.record(self.store, user.name, "skill-evals", detail=name)
        return RedirectResponse(f"{request.scope.get('root_path', '')}/skills/{name}/evals", 303)

    # -- bulk runs --------------------------------------------------------------------------------------

    def _skill_names(self) -> list[str]:
        from toolbag.skills import SkillLibrary

        try:
            return SkillLibrary(self.skills_dir()).names()
        except (OSError, ValueError):
            return []

    async def bulk_runs(self, request: Request, user: ConsoleKey, status: int = 200, **context: Any) -> Response:
        context.setdefault("errors", {})
        context.setdefault("values", {})
        return self.page(request, "bulk.html", status, user=user, runs=self.bulk.list(), skills=self._skill_names(),
                         max_mb=MAX_UPLOAD_BYTES // (1024 * 1024), **context)

    async def bulk_upload(self, request: Request, user: ConsoleKey) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES + 64 * 1024:
            return await self.bulk_runs(request, user, 413, errors={
                "file": f"the file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB"})
        form = await request.form(max_files=1, max_fields=20, max_part_size=MAX_UPLOAD_BYTES + 1)
        sent = form.get("csrf")
        expected = request.session.get("csrf")
        if not isinstance(sent, str) or not isinstance(expected, str) or not hmac.compare_digest(
                sent.encode(), expected.encode()):
            raise Refused(403, "the form expired or did not come from this console (CSRF check failed); "
                               "reload the page and try again")
        upload = form.get("file")
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        if upload is None or isinstance(upload, str) or not upload.filename:
            return await self.bulk_runs(request, user, 400, errors={"file": "choose a file"}, values=values)
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
        try:
            meta = self.bulk.create(filename=upload.filename, data=data, skill=values.get("skill", ""),
                                    id_column=values.get("id_column", "").strip(), who=user.name)
        except BulkRunError as err:
            return await self.bulk_runs(request, user, 400, errors={err.field: err.message}, values=values)
        actions.record(self.store, user.name, "bulk-upload", detail=f"{meta.id} {meta.filename} skill {meta.skill}")
        return RedirectResponse(f"{request.scope.get('root_path', '')}/bulk/{meta.id}", 303)

    async def bulk_run(self, request: Request, user: ConsoleKey) -> Response:
        return self._bulk_page(request, user, request.path_params["run_id"])

    def _bulk_page(self, request: Request, user: ConsoleKey, run_id: str, status: int = 200,
                   message: str = "") -> Response:
        try:
            meta = self.bulk.meta(run_id)
        except BulkRunError as err:
            raise Refused(404, err.message) from None
        running = self.bulk.running(run_id)
        dry = None
        error = ""
        if not running and meta.state != "done":
            try:
                dry = self.bulk.dry_run(run_id)
            except BulkRunError as err:
                error = err.message
        counts = meta.counts
        remaining = max(0, int(counts.get("total", 0)) - int(counts.get("done_before", 0))
                        - int(counts.get("ok", 0)) - int(counts.get("errors", 0)))
        rate = float(counts.get("lines_per_s", 0.0) or 0.0)
        eta_s = remaining / rate if rate > 0 and running else None
        return self.page(request, "bulk_run.html", status, user=user, run=meta, running=running, dry=dry,
                         error=error, eta_s=eta_s, remaining=remaining, message=message,
                         has_results=self.bulk.output_path(meta).is_file(),
                         has_errors=self.bulk.errors_path(meta).is_file())

    async def bulk_start(self, request: Request, user: ConsoleKey) -> Response:
        await self.form(request)
        run_id = request.path_params["run_id"]
        try:
            self.bulk.start(run_id)
        except BulkRunError as err:
            return self._bulk_page(request, user, run_id, 409, message=err.message)
        actions.record(self.store, user.name, "bulk-start", detail=run_id)
        return RedirectResponse(f"{request.scope.get('root_path', '')}/bulk/{run_id}", 303)

    async def bulk_stop(self, request: Request, user: ConsoleKey) -> Response:
        await self.form(request)
        run_id = request.path_params["run_id"]
        try:
            self.bulk.stop(run_id)
        except BulkRunError as err:
            return self._bulk_page(request, user, run_id, 409, message=err.message)
        actions.record(self.store, user.name, "bulk-stop", detail=run_id)
        return RedirectResponse(f"{request.scope.get('root_path', '')}/bulk/{run_id}", 303)

    async def bulk_download(self, request: Request, user: ConsoleKey) -> Response:
        try:
            meta = self.bulk.meta(request.path_params["run_id"])
        except BulkRunError as err:
            raise Refused(404, err.message) from None
        which = request.path_params["which"]
        if which not in ("results", "errors"):
            raise Refused(404, "download results or errors")
        errors = which == "errors"
        path = self.bulk.errors_path(meta) if errors else self.bulk.output_path(meta)
        if not path.is_file():
            raise Refused(404, "nothing written yet")
        stem = Path(meta.filename).stem or "run"
        name = f"{stem}.{'errors' if errors else 'results'}.{meta.format}"
        media = "text/csv" if meta.format == "csv" else "application/x-ndjson"
        return FileResponse(path, media_type=media, filename=name)

    # -- permissions ------------------------------------------------------------------------------------

    async def permissions(self, request: Request, user: ConsoleKey) -> Response:
        return await self._permissions_page(request, user)

    async def _permissions_page(self, request: Request, user: ConsoleKey, status: int = 200,
                                **extra: Any) -> Response:
        q = request.query_params
        source = current_policy(self.store)
        grid = matrix(self.config, source.policy, list(BUILTIN_TOOLS), [])
        why = None
        errors: dict[str, str] = {}
        agent, model, tool = q.get("agent", "")[:128], q.get("model", "")[:128], q.get("tool", "")[:200]
        if agent or model or tool:
            for name, value in (("agent", agent), ("model", model), ("tool", tool)):
                if not value:
                    errors[name] = "required to explain a decision"
            if not errors:
                why = explain(self.config, source.policy, agent, model, tool)
        flt_errors: dict[str, str] = {}
        decision = q.get("decision", "")
        if decision and decision not in ("allow", "deny"):
            flt_errors["decision"] = "allow or deny"
            decision = ""
        kind = q.get("kind", "")
        flt = AuditFilter(agent=q.get("audit_agent", "")[:128], tool=q.get("audit_tool", "")[:200],
                          decision=decision, job_id=q.get("audit_job", "")[:128], kinds=(kind[:32],) if kind else ())
        entries = list(RedisAuditReader(self.store.redis, self.store.keys).query(flt, limit=100))
        extra.setdefault("policy_text", source.policy.text)
        return self.page(request, "permissions.html", status, user=user, source=source, grid=grid, why=why, q=q,
                         errors=errors, flt_errors=flt_errors, entries=entries, models=sorted(self.config.models),
                         **extra)

    async def policy_preview(self, request: Request, user: ConsoleKey) -> Response:
        return await self._policy_change(request, user, publish=False)

    async def policy_publish(self, request: Request, user: ConsoleKey) -> Response:
        return await self._policy_change(request, user, publish=True)

    async def _policy_change(self, request: Request, user: ConsoleKey, *, publish: bool) -> Response:
        from toolbag.console.permissions import preview
        from toolbag.gateway.live import PolicyStore
        from toolbag.gateway.policy import PolicyError, parse_policy

        fields = await self.form(request)
        text = fields.get("policy", "").replace("\r\n", "\n")
        if len(text) > MAX_FORM_BYTES:
            return await self._permissions_page(request, user, 400, policy_text=text[:1000],
                                                policy_error=f"at most {MAX_FORM_BYTES} characters")
        try:
            new = parse_policy(text, source=f"console:{user.name}")
        except PolicyError as err:
            return await self._permissions_page(request, user, 400, policy_text=text, policy_error=str(err))
        current = current_policy(self.store)
        changes = preview(self.config, current.policy, new, list(BUILTIN_TOOLS))
        if not publish:
            return await self._permissions_page(request, user, policy_text=text, changes=changes, previewed=new)
        result = PolicyStore(self.store.redis, self.store.keys).publish(new, who=f"console:{user.name}")
        if not result.ok:
            why = (f"refused: version {new.version} is older than the live version {result.live_version}; "
                   "raise `version`") if result.status == "older" else \
                f"refused: version {new.version} is live with other text; raise `version`"
            actions.record(self.store, user.name, "policy-publish", outcome="refused", detail=why)
            return await self._permissions_page(request, user, 409, policy_text=text, policy_error=why,
                                                changes=changes, previewed=new)
        actions.record(self.store, user.name, "policy-publish", detail=f"version {new.version} {new.digest[:19]} "
                                                                       f"({len(changes)} cells changed)")
        return await self._permissions_page(request, user, published=f"version {new.version} is live "
                                                                      f"({result.status})", changes=changes)

    # -- keys -------------------------------------------------------------------------------------------

    async def keys(self, request: Request, user: ConsoleKey) -> Response:
        return self._keys_page(request, user)

    def _keys_page(self, request: Request, user: ConsoleKey, status: int = 200, **context: Any) -> Response:
        context.setdefault("errors", {})
        context.setdefault("values", {})
        return self.page(request, "keys.html", status, user=user, console_keys=self.console_keys.list(),
                         api_keys=self.api_keys.list(), tiers=TIERS, **context)

    async def create_console_key(self, request: Request, user: ConsoleKey) -> Response:
        fields = await self.form(request)
        try:
            key, secret = self.console_keys.create(fields.get("name", "").strip(), fields.get("role", ""))
        except ConsoleKeyError as err:
            where = "role" if str(err).startswith("role") else "name"
            return self._keys_page(request, user, 400, errors={f"console_{where}": str(err)}, values=fields)
        actions.record(self.store, user.name, "console-key-create", detail=f"{key.id} {key.name} {key.role}")
        return self._keys_page(request, user, created={"what": "console key", "id": key.id, "secret": secret})

    async def revoke_console_key(self, request: Request, user: ConsoleKey) -> Response:
        await self.form(request)
        try:
            key = self.console_keys.revoke(request.path_params["key_id"])
        except ConsoleKeyError as err:
            raise Refused(404, str(err)) from None
        actions.record(self.store, user.name, "console-key-revoke", detail=f"{key.id} {key.name}")
        return self._keys_page(request, user, message=f"console key {key.id} ({key.name}) revoked")

    async def create_api_key(self, request: Request, user: ConsoleKey) -> Response:
        fields = await self.form(request)
        tier = fields.get("tier", "") or None
        try:
            key, secret = self.api_keys.create(fields.get("caller", "").strip(), tier)
        except ApiKeyError as err:
            where = "tier" if "tier" in str(err) else "caller"
            return self._keys_page(request, user, 400, errors={f"api_{where}": str(err)}, values=fields)
        actions.record(self.store, user.name, "api-key-create", detail=f"{key.id} {key.caller}")
        return self._keys_page(request, user, created={"what": "API key", "id": key.id, "secret": secret})

    async def revoke_api_key(self, request: Request, user: ConsoleKey) -> Response:
        await self.form(request)
        key_id = request.path_params["key_id"]
        try:
            self.api_keys.revoke(key_id)
        except ApiKeyError as err:
            raise Refused(404, str(err)) from None
        actions.record(self.store, user.name, "api-key-revoke", detail=key_id)
        return self._keys_page(request, user, message=f"API key {key_id} revoked")


def _header(folder: Path) -> dict[str, str]:
    """The skill's version, capability, tier and description as loaded, or the load error."""
    from toolbag.skills import SkillError, load_skill

    try:
        skill = load_skill(folder)
    except SkillError as err:
        return {"error": str(err).splitlines()[0]}
    return {"version": skill.version, "capability": skill.capability, "tier": skill.default_tier,
            "description": skill.description}


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _digest(secret: str) -> str:
    from toolbag.api.keys import key_digest

    return key_digest(secret)


class _Sessions:
    """Starlette's signed-cookie sessions, made on the first request: the signing secret may come from Redis,
    and building the app must not need Redis (the front door starts before it can reach it)."""

    def __init__(self, app: ASGIApp, secret: Callable[[], str], https_only: bool) -> None:
        self.app = app
        self.secret = secret
        self.https_only = https_only
        self.inner: SessionMiddleware | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.inner is None and scope["type"] in ("http", "websocket"):
            secret = await run_in_threadpool(self.secret)
            self.inner = SessionMiddleware(self.app, secret_key=secret, session_cookie=SESSION_COOKIE,
                                           max_age=SESSION_MAX_AGE_S, same_site="strict", https_only=self.https_only)
        await (self.inner or self.app)(scope, receive, send)


def console_app(client: Client | None = None, *, grafana_url: str | None = None, https_only: bool = False,
                skills_dir: Path | None = None, runs_dir: Path | None = None) -> Starlette:
    """The console as an ASGI app, to be mounted under ``/console`` (it builds its links from the mount's
    root path). ``https_only``: mark the session cookie Secure (behind TLS). ``skills_dir``: the skill library
    to show and edit (default: :func:`toolbag.skills.default_skills_dir`). ``runs_dir``: where bulk runs keep
    their files (default: ``$TOOLBAG_CONSOLE_RUNS_DIR`` or ``~/.toolbag/console-runs``). ``grafana_url``: the
    fleet dashboard the Fleet page links to (default: ``$TOOLBAG_GRAFANA_URL``; only an http(s) address)."""
    grafana = grafana_url if grafana_url is not None else os.environ.get(GRAFANA_ENV, "")
    if not grafana.startswith(("http://", "https://")):
        grafana = ""  # only a web address becomes a link
    console = Console(client or Client(), grafana or None, skills_dir, runs_dir)
    g = console.guard
    static = Path(__file__).with_name("static")

    async def crashed(request: Request, exc: Exception) -> Response:
        log.exception("console request failed", exc_info=exc)
        message = f"internal error ({type(exc).__name__}); the console log has the details"
        try:
            return console.page(request, "refused.html", 500, anonymous=True, message=message)
        except Exception:  # the session itself is unusable: a plain line, still no traceback
            return PlainTextResponse(message, 500)

    routes = [
        Route("/", console.home, methods=["GET"]),
        Route("/login", console.login_form, methods=["GET"]),
        Route("/login", console.login, methods=["POST"]),
        Route("/logout", console.logout, methods=["POST"]),
        Route("/fleet", g("viewer", console.fleet), methods=["GET"]),
        Route("/jobs", g("viewer", console.jobs), methods=["GET"]),
        Route("/jobs/{job_id}", g("viewer", console.job), methods=["GET"]),
        Route("/jobs/{job_id}/stream", g("viewer", console.job_stream), methods=["GET"]),
        Route("/jobs/{job_id}/cancel", g("operator", console.cancel), methods=["POST"]),
        Route("/escalations", g("viewer", console.escalations), methods=["GET"]),
        Route("/escalations/{job_id}", g("viewer", console.escalation), methods=["GET"]),
        Route("/escalations/{job_id}/resolve", g("operator", console.resolve), methods=["POST"]),
        Route("/escalations/{job_id}/reject", g("operator", console.reject), methods=["POST"]),
        Route("/escalations/{job_id}/retry", g("operator", console.retry), methods=["POST"]),
        Route("/skills", g("viewer", console.skills), methods=["GET"]),
        Route("/skills/{name}", g("viewer", console.skill), methods=["GET"]),
        Route("/skills/{name}/check", g("viewer", console.skill_check), methods=["POST"]),
        Route("/skills/{name}/problems", g("viewer", console.skill_problems), methods=["POST"]),
        Route("/skills/{name}/save", g("operator", console.skill_save), methods=["POST"]),
        Route("/skills/{name}/evals", g("viewer", console.skill_evals), methods=["GET"]),
        Route("/skills/{name}/evals", g("operator", console.skill_evals_start), methods=["POST"]),
        Route("/bulk", g("viewer", console.bulk_runs), methods=["GET"]),
        Route("/bulk", g("operator", console.bulk_upload), methods=["POST"]),
        Route("/bulk/{run_id}", g("viewer", console.bulk_run), methods=["GET"]),
        Route("/bulk/{run_id}/start", g("operator", console.bulk_start), methods=["POST"]),
        Route("/bulk/{run_id}/stop", g("operator", console.bulk_stop), methods=["POST"]),
        Route("/bulk/{run_id}/download/{which:str}", g("viewer", console.bulk_download), methods=["GET"]),
        Route("/permissions", g("viewer", console.permissions), methods=["GET"]),
        Route("/permissions/preview", g("admin", console.policy_preview), methods=["POST"]),
        Route("/permissions/publish", g("admin", console.policy_publish), methods=["POST"]),
        Route("/keys", g("admin", console.keys), methods=["GET"]),
        Route("/keys/console", g("admin", console.create_console_key), methods=["POST"]),
        Route("/keys/console/{key_id}/revoke", g("admin", console.revoke_console_key), methods=["POST"]),
        Route("/keys/api", g("admin", console.create_api_key), methods=["POST"]),
        Route("/keys/api/{key_id}/revoke", g("admin", console.revoke_api_key), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=static), name="static"),
    ]
    middleware = [Middleware(_Sessions, secret=lambda: _session_secret(console.client), https_only=https_only)]
    return Starlette(routes=routes, middleware=middleware, exception_handlers={Exception: crashed})
