"""The web console's handlers (Starlette TestClient) on an in-process fleet over a real Redis and the simulator:
sign-in, roles, CSRF, escaping, the pages, and the actions through the same library calls as the CLI."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from tests.fleet import REPO
from toolbag.cli.app import app as toolbag_cli
from toolbag.config import load_config
from toolbag.console import ConsoleKeyError, ConsoleKeyStore
from toolbag.console.app import SESSION_COOKIE
from toolbag.console.forms import output_fields, read_output
from toolbag.console.keys import may
from toolbag.gateway.audit import AuditFilter, RedisAuditReader
from toolbag.jobs import JobStatus
from toolbag.simulator.server import SimulatorServer
from toolbag.testing import InProcessFleet, short_waits

runner = CliRunner()
HOSTILE = "<script>alert('x')</script><b>bold</b>"


@pytest.fixture(scope="module")
def fleet(redis_server: str, sim: SimulatorServer) -> Iterator[InProcessFleet]:
    with InProcessFleet(short_waits(load_config()), f"{redis_server}/0", simulator=sim) as f:
        yield f


@pytest.fixture(scope="module")
def app(fleet: InProcessFleet) -> object:
    from toolbag.api.app import create_app

    return create_app(fleet.client)


def _signed_in(app: object, fleet: InProcessFleet, role: str, name: str | None = None) -> TestClient:
    _, secret = ConsoleKeyStore(fleet.store.redis, fleet.store.keys).create(name or f"{role}-person", role)
    client = TestClient(app, follow_redirects=False)  # type: ignore[arg-type]
    page = client.get("/console/login")
    response = client.post("/console/login", data={"key": secret, "csrf": _csrf(page.text)})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console/fleet"
    return client


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def _console_audit(fleet: InProcessFleet, event: str) -> list[dict[str, str]]:
    reader = RedisAuditReader(fleet.store.redis, fleet.store.keys)
    return [e for _id, e in reader.query(AuditFilter(kinds=("console",), event=event), limit=50)]


def test_roles_rank_and_keys_are_stored_only_hashed(fleet: InProcessFleet) -> None:
    assert may("admin", "operator") and may("operator", "viewer") and not may("viewer", "operator")
    assert not may("nobody", "viewer")
    store = ConsoleKeyStore(fleet.store.redis, fleet.store.keys)
    key, secret = store.create("dana", "operator")
    assert store.lookup(secret) == key and store.lookup(secret + "x") is None
    stored = [repr(fleet.store.redis.hgetall(k)) for k in
              fleet.store.redis.scan_iter(match=f"{fleet.store.keys.prefix}consolekey*")]
    assert stored and not any(secret in s or secret[4:20] in s for s in stored)
    with pytest.raises(ConsoleKeyError, match="role"):
        store.create("dana", "owner")
    with pytest.raises(ConsoleKeyError, match="name"):
        store.create("<b>", "viewer")
    store.revoke(key.id)
    assert store.lookup(secret) is None


def test_sign_in_needs_a_live_key_and_a_csrf_token(app: object, fleet: InProcessFleet) -> None:
    client = TestClient(app, follow_redirects=False)  # type: ignore[arg-type]
    assert client.get("/console/fleet").headers["location"] == "/console/login"
    page = client.get("/console/login")
    wrong = client.post("/console/login", data={"key": "tbc-not-a-key", "csrf": _csrf(page.text)})
    assert wrong.status_code == 400 and "unknown or revoked console key" in wrong.text
    forged = client.post("/console/login", data={"key": "tbc-whatever", "csrf": "forged-token-forged-token"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert "Traceback" not in wrong.text + forged.text


def test_a_revoked_key_is_signed_out_on_its_next_click(app: object, fleet: InProcessFleet) -> None:
    client = _signed_in(app, fleet, "viewer", "revokee")
    assert client.get("/console/jobs").status_code == 200
    store = ConsoleKeyStore(fleet.store.redis, fleet.store.keys)
    store.revoke(next(k.id for k in store.list() if k.name == "revokee"))
    assert client.get("/console/jobs").headers["location"] == "/console/login"
    assert SESSION_COOKIE in client.cookies


def test_fleet_page_shows_queues_models_and_the_hour(app: object, fleet: InProcessFleet) -> None:
    job = fleet.client.submit("summarize", input={"text": "fleet page"}, tier="interactive", caller="fleet-test")
    fleet.run_until_idle()
    assert job.result(timeout_s=0).ok
    client = _signed_in(app, fleet, "viewer")
    page = client.get("/console/fleet")
    assert page.status_code == 200
    assert 'id="queues"' in page.text and "anthropic" in page.text and "interactive" in page.text
    assert "claude-haiku" in page.text and "closed" in page.text
    finished = int(re.search(r'id="finished-hour">(\d+)<', page.text).group(1))  # type: ignore[union-attr]
    assert finished >= 1
    assert "<svg class=\"chart succeeded\"" in page.text
    assert "content-security-policy" in page.headers


def test_job_page_escapes_user_text_and_shows_the_timeline(app: object, fleet: InProcessFleet) -> None:
    job = fleet.client.submit("summarize", input={"text": f"[[sim:refusal@claude-*]] {HOSTILE}"},
                              tier="interactive", caller="escape-test")
    fleet.run_until_idle()
    client = _signed_in(app, fleet, "viewer")
    page = client.get(f"/console/jobs/{job.id}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "&lt;script&gt;alert" in page.text
    assert "refused" in page.text and "reroute" in page.text  # the attempt and the decision, in order
    assert page.text.index("attempt 1") < page.text.index("reroute")
    listed = client.get("/console/jobs", params={"caller": "escape-test"})
    assert job.id in listed.text
    bad = client.get("/console/jobs", params={"hours": "soon"})
    assert bad.status_code == 200 and "a number of hours" in bad.text
    assert client.get("/console/jobs/no-such-job").status_code == 404


def test_a_viewer_cannot_cancel_an_operator_can(app: object, fleet: InProcessFleet) -> None:
    job = fleet.client.submit("summarize", input={"text": "to cancel"}, tier="batch", caller="cancel-test")
    viewer = _signed_in(app, fleet, "viewer", "vera")
    page = viewer.get(f"/console/jobs/{job.id}")
    assert "disabled" in page.text
    refused = viewer.post(f"/console/jobs/{job.id}/cancel", data={"csrf": _csrf(page.text)})
    assert refused.status_code == 403 and "cannot do this" in refused.text
    assert fleet.store.get(job.id).status is JobStatus.QUEUED
    assert any(e["agent"] == "vera" and e["outcome"] == "denied" for e in _console_audit(fleet, "refused"))
    operator = _signed_in(app, fleet, "operator", "otto")
    no_csrf = operator.post(f"/console/jobs/{job.id}/cancel", data={})
    assert no_csrf.status_code == 403 and fleet.store.get(job.id).status is JobStatus.QUEUED
    page = operator.get(f"/console/jobs/{job.id}")
    done = operator.post(f"/console/jobs/{job.id}/cancel", data={"csrf": _csrf(page.text)})
    assert done.status_code == 303
    assert fleet.store.get(job.id).status is JobStatus.CANCELLED
    assert any(e["agent"] == "otto" and e["job_id"] == job.id for e in _console_audit(fleet, "cancel"))


def _escalated(fleet: InProcessFleet, caller: str) -> str:
    job = fleet.client.submit(skill="classify", input={"text": f"[[sim:refusal]] {HOSTILE}",
                                                       "labels": ["billing", "bug"]}, caller=caller)
    fleet.run_until_idle()
    assert fleet.store.get(job.id).status is JobStatus.ESCALATED
    return job.id


def test_resolve_form_comes_from_the_output_schema_and_is_validated(app: object, fleet: InProcessFleet) -> None:
    job_id = _escalated(fleet, "resolve-test")
    client = _signed_in(app, fleet, "operator", "olga")
    inbox = client.get("/console/escalations")
    assert job_id in inbox.text and "<script>alert" not in inbox.text
    page = client.get(f"/console/escalations/{job_id}")
    assert 'name="label"' in page.text and 'name="confidence"' in page.text and "<option>high</option>" in page.text
    bad = client.post(f"/console/escalations/{job_id}/resolve",
                      data={"csrf": _csrf(page.text), "confidence": "high", "reason": "<i>words</i>"})
    assert bad.status_code == 400
    assert re.search(r'id="error-label">output\.label: is required but missing<', bad.text), bad.text
    assert "&lt;i&gt;words&lt;/i&gt;" in bad.text  # the typed value comes back, escaped
    assert fleet.store.get(job_id).status is JobStatus.ESCALATED
    good = client.post(f"/console/escalations/{job_id}/resolve",
                       data={"csrf": _csrf(page.text), "label": "bug", "confidence": "high", "reason": "it broke"})
    assert good.status_code == 303
    result = fleet.client.result(job_id, timeout_s=0)
    assert result.ok and result.output == {"label": "bug", "confidence": "high", "reason": "it broke"}
    assert result.model == "console:olga"
    assert any(e["job_id"] == job_id and e["agent"] == "olga" for e in _console_audit(fleet, "resolve"))


def test_reject_needs_a_reason_and_retry_a_known_model(app: object, fleet: InProcessFleet) -> None:
    job_id = _escalated(fleet, "reject-test")
    client = _signed_in(app, fleet, "operator")
    page = client.get(f"/console/escalations/{job_id}")
    empty = client.post(f"/console/escalations/{job_id}/reject", data={"csrf": _csrf(page.text), "reject_reason": " "})
    assert empty.status_code == 400 and 'id="error-reject-reason">a reason is required<' in empty.text
    unknown = client.post(f"/console/escalations/{job_id}/retry", data={"csrf": _csrf(page.text), "model": "gpt-x"})
    assert unknown.status_code == 400 and "unknown model" in unknown.text
    done = client.post(f"/console/escalations/{job_id}/reject",
                       data={"csrf": _csrf(page.text), "reject_reason": "out of scope"})
    assert done.status_code == 303
    result = fleet.client.result(job_id, timeout_s=0)
    assert result.status is JobStatus.FAILED and result.error == "rejected: out of scope"
    again = _escalated(fleet, "retry-test")
    retried = client.post(f"/console/escalations/{again}/retry", data={"csrf": _csrf(page.text), "model": "gpt-luna"})
    assert retried.status_code == 303 and "gpt-luna" in retried.headers["location"]
    assert fleet.store.get(again).status is JobStatus.QUEUED and fleet.store.get(again).model == "gpt-luna"


def test_free_form_resolution_and_schema_fields() -> None:
    fields = output_fields(None)
    assert [f.name for f in fields] == ["output"]
    assert read_output(fields, {"output": '{"a": 1}'}, None) == ({"a": 1}, {})
    assert read_output(fields, {"output": "plain words"}, None) == ("plain words", {})
    assert read_output(fields, {"output": ""}, None)[1] == {"output": "the answer is required"}
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "ok": {"type": "boolean"},
                                               "tags": {"type": "array", "items": {"type": "string"}}},
              "required": ["n"], "additionalProperties": False}
    fields = output_fields(schema)
    assert [f.kind for f in fields] == ["integer", "boolean", "json"]
    assert read_output(fields, {"n": "two", "tags": "[1"}, schema)[1].keys() == {"n", "tags"}
    assert read_output(fields, {"n": "2", "ok": "on", "tags": '["a"]'}, schema) == (
        {"n": 2, "ok": True, "tags": ["a"]}, {})
    assert "tags.0" in read_output(fields, {"n": "2", "tags": "[1]"}, schema)[1]["tags"].replace("[0]", ".0")


def test_permissions_why_is_the_cli_answer(app: object, fleet: InProcessFleet) -> None:
    client = _signed_in(app, fleet, "viewer")
    page = client.get("/console/permissions", params={"agent": "analyst", "model": "claude-haiku", "tool": "kv.get"})
    assert page.status_code == 200 and 'id="matrix"' in page.text
    cli = runner.invoke(toolbag_cli, ["permissions", "explain", "--agent", "analyst", "--model", "claude-haiku",
                                      "--tool", "kv.get", "--file", str(REPO / "policy.yaml"), "--json"])
    answer = json.loads(cli.stdout)
    why = html.unescape(page.text[page.text.index('id="why"'):])
    assert ("ALLOW" if answer["allowed"] else "DENY") in why[:300]
    assert answer["reason"] in why and all(rule["id"] in why for rule in answer["rules"])
    missing = client.get("/console/permissions", params={"agent": "analyst"})
    assert "required to explain a decision" in missing.text


def test_keys_page_is_for_admins_and_shows_a_new_secret_once(app: object, fleet: InProcessFleet) -> None:
    operator = _signed_in(app, fleet, "operator")
    assert operator.get("/console/keys").status_code == 403
    admin = _signed_in(app, fleet, "admin", "ada")
    page = admin.get("/console/keys")
    bad = admin.post("/console/keys/console", data={"csrf": _csrf(page.text), "name": "", "role": "viewer"})
    assert bad.status_code == 400 and 'id="error-console-name"' in bad.text
    made = admin.post("/console/keys/console", data={"csrf": _csrf(page.text), "name": "newbie", "role": "viewer"})
    secret = re.search(r'id="new-secret">(tbc-[^<]+)<', made.text).group(1)  # type: ignore[union-attr]
    assert secret not in admin.get("/console/keys").text
    api = admin.post("/console/keys/api", data={"csrf": _csrf(page.text), "caller": "bot", "tier": "batch"})
    api_secret = re.search(r'id="new-secret">(tbk-[^<]+)<', api.text).group(1)  # type: ignore[union-attr]
    assert fleet.client.store.redis.hgetall(fleet.store.keys.api_key(__import__("toolbag.api.keys").api.keys
                                                                      .key_digest(api_secret)))
    assert any(e["agent"] == "ada" for e in _console_audit(fleet, "console-key-create"))
    assert all(secret not in json.dumps(e) for e in _console_audit(fleet, "console-key-create"))


def test_console_keys_cli_prints_the_secret_once_and_refuses_a_bad_role(redis_url: str) -> None:
    env = {"TOOLBAG_REDIS_URL": redis_url}
    made = runner.invoke(toolbag_cli, ["console-keys", "create", "--name", "alice", "--role", "admin"], env=env)
    assert made.exit_code == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["role"] == "admin" and key["key"].startswith("tbc-")
    bad = runner.invoke(toolbag_cli, ["console-keys", "create", "--name", "bob", "--role", "owner"], env=env)
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --role") and len(bad.stderr.splitlines()) == 1
    import redis

    from toolbag.store.keys import Keys

    store = ConsoleKeyStore(redis.Redis.from_url(redis_url), Keys(load_config().fleet.key_prefix))
    assert [(k.id, k.name, k.role) for k in store.list()] == [(key["id"], "alice", "admin")]
    assert store.lookup(key["key"]) is not None


@pytest.fixture
def skills_site(fleet: InProcessFleet, tmp_path: Path) -> tuple[object, Path]:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from toolbag.console import console_app

    root = tmp_path / "skills"
    shutil.copytree(REPO / "skills", root)
    return Starlette(routes=[Mount("/console", app=console_app(fleet.client, skills_dir=root))]), root


def _skill_form(page: str, **override: str) -> dict[str, str]:
    data = {"csrf": _csrf(page)}
    for name in ("SKILL.md", "schema.json", "evals.yaml"):
        found = re.search(rf'name="{re.escape(name)}"[^>]*>(.*?)</textarea>', page, re.S)
        assert found, name
        data[name] = html.unescape(found.group(1))
    data.update({k.replace("_", ".", 1) if k != "csrf" else k: v for k, v in override.items()})
    return data


def test_skill_edit_checks_like_the_cli_and_saves_a_bumped_version(
        skills_site: tuple[object, Path], fleet: InProcessFleet, tmp_path: Path) -> None:
    app, root = skills_site
    operator = _signed_in(app, fleet, "operator", "sam")
    listing = operator.get("/console/skills")
    assert "classify" in listing.text and "valid" in listing.text
    page = operator.get("/console/skills/classify")
    assert page.status_code == 200 and "toolbag.version" in page.text
    rendered = runner.invoke(toolbag_cli, ["skills", "render", "classify", "--provider", "all", "--case",
                                           "guidance-decides"], env={"TOOLBAG_SKILLS_DIR": str(root)})
    assert rendered.exit_code == 0, rendered.stderr
    shown_wire = operator.get("/console/skills/classify", params={"case": "guidance-decides"}).text
    for provider, body in json.loads(rendered.stdout).items():
        block = re.search(rf'id="vendor-{provider}">.*?<pre>(.*?)</pre>', shown_wire, re.S)
        assert block and json.loads(html.unescape(block.group(1))) == body, provider
    broken = json.loads(_skill_form(page.text)["schema.json"])
    del broken["output"]["properties"]["confidence"]
    broken_text = json.dumps(broken, indent=2)
    checked = operator.post("/console/skills/classify/check", data=_skill_form(page.text, schema_json=broken_text))
    assert checked.status_code == 400
    shown = html.unescape(checked.text)
    bad = tmp_path / "bad" / "classify"
    shutil.copytree(root / "classify", bad)
    (bad / "schema.json").write_text(broken_text)
    cli = runner.invoke(toolbag_cli, ["skills", "validate", str(bad)])
    assert cli.exit_code == 1
    lines = [line.removeprefix("  - ") for line in cli.stdout.splitlines()[1:] if line.startswith("  - ")]
    assert lines
    for line in lines:
        assert line.replace(str(bad), str(root / "classify")) in shown
    assert json.loads((root / "classify" / "schema.json").read_text())["output"]["properties"].get("confidence")
    viewer = _signed_in(app, fleet, "viewer")
    viewer_form = _skill_form(viewer.get("/console/skills/classify").text)
    assert viewer.post("/console/skills/classify/save", data=viewer_form).status_code == 403
    assert viewer.post("/console/skills/classify/evals", data={"csrf": viewer_form["csrf"]}).status_code == 403
    edited = _skill_form(page.text)
    edited["SKILL.md"] = edited["SKILL.md"].replace("Judge the text by what it is about",
                                                    "Judge the text by what it is mostly about")
    saved = operator.post("/console/skills/classify/save", data=edited)
    assert saved.status_code == 200, saved.text
    text = html.unescape(saved.text)
    assert "Version 1.0.0 → 1.0.1" in text and "skill classify changed: 1.0.0 → 1.0.1" in text
    assert "+- Judge the text by what it is mostly about" in text
    assert 'toolbag.version: "1.0.1"' in (root / "classify" / "SKILL.md").read_text()
    assert any(e["agent"] == "sam" and "classify 1.0.0 -> 1.0.1" in e["detail"]
               for e in _console_audit(fleet, "skill-save"))


def tickets_csv(rows: int, *, bad_rows: tuple[int, ...] = ()) -> bytes:
    lines = ["ticket_id,subject,body,customer_plan"]
    for i in range(1, rows + 1):
        body = "" if i in bad_rows else f"Ticket {i}: the export button does nothing <b>{i}</b>"
        lines.append(f"T-{i},Export broken {i},{body},pro")
    return ("\n".join(lines) + "\n").encode()


def test_bulk_upload_dry_run_start_and_download(fleet: InProcessFleet, tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from toolbag.console import console_app

    app = Starlette(routes=[Mount("/console", app=console_app(fleet.client, runs_dir=tmp_path / "runs"))])
    viewer = _signed_in(app, fleet, "viewer")
    page = viewer.get("/console/bulk")
    refused = viewer.post("/console/bulk", data={"csrf": _csrf(page.text), "skill": "triage-ticket"},
                          files={"file": ("t.csv", tickets_csv(3), "text/csv")})
    assert refused.status_code == 403
    client = _signed_in(app, fleet, "operator", "bea")
    page = client.get("/console/bulk")
    wrong_type = client.post("/console/bulk", data={"csrf": _csrf(page.text), "skill": "triage-ticket"},
                             files={"file": ("t.xlsx", b"PK", "application/octet-stream")})
    assert wrong_type.status_code == 400 and 'id="error-file">upload a .csv or a .jsonl file<' in wrong_type.text
    no_skill = client.post("/console/bulk", data={"csrf": _csrf(page.text), "skill": ""},
                           files={"file": ("t.csv", tickets_csv(3), "text/csv")})
    assert no_skill.status_code == 400 and 'id="error-skill">pick a skill<' in no_skill.text
    made = client.post("/console/bulk", data={"csrf": _csrf(page.text), "skill": "triage-ticket",
                                              "id_column": "ticket_id"},
                       files={"file": ("tickets.csv", tickets_csv(12, bad_rows=(5,)), "text/csv")})
    assert made.status_code == 303, made.text
    run_url = made.headers["location"]
    run_page = client.get(run_url)
    assert re.search(r'id="dry-total">12<', run_page.text) and re.search(r'id="dry-invalid">1<', run_page.text)
    assert "real time" in run_page.text and re.search(  # the console's runs keep the tier's default deadline
        r'id="vendor-batch-estimate">\(no vendor batches: the deadline \(86400s\) leaves less than', run_page.text)
    started = client.post(f"{run_url}/start", data={"csrf": _csrf(run_page.text)})
    assert started.status_code == 303
    run_id = run_url.rsplit("/", 1)[1]

    def finished() -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = json.loads((tmp_path / "runs" / run_id / "run.json").read_text())["state"]
            if state not in ("running", "new"):
                return str(state)
            time.sleep(0.05)
        return "timeout"

    assert fleet.run_producer(finished, timeout_s=90) == "done"
    done_page = client.get(run_url)
    assert re.search(r'id="count-ok">11<', done_page.text) and re.search(r'id="count-errors">1<', done_page.text)
    results = client.get(f"{run_url}/download/results")
    assert results.status_code == 200 and results.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(results.content.decode("utf-8-sig"))))
    assert sorted(r["ticket_id"] for r in rows) == sorted(f"T-{i}" for i in range(1, 13) if i != 5)
    errors = client.get(f"{run_url}/download/errors")
    assert "T-5" in errors.text and "body" in errors.text
    assert any(e["agent"] == "bea" for e in _console_audit(fleet, "bulk-start"))


def test_job_text_streams_as_server_sent_events(app: object, fleet: InProcessFleet) -> None:
    job = fleet.client.submit("summarize", input={"text": "[[sim:refusal@claude-*]] stream me <i>please</i>"},
                              tier="interactive", caller="stream-test")
    fleet.run_until_idle()
    client = _signed_in(app, fleet, "viewer")
    with client.stream("GET", f"/console/jobs/{job.id}/stream") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    events = [(block.split("\n")[0].removeprefix("event: "), json.loads(block.split("\n")[1].removeprefix("data: ")))
              for block in body.strip().split("\n\n")]
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and events[-1][1] == {"status": "succeeded"}
    ends = [data for kind, data in events if kind == "end"]
    assert [e["ok"] for e in ends] == [False, True] and ends[0]["outcome"] == "refused"
    answer = "".join(d["text"] for kind, d in events if kind == "delta" and d["attempt"] == ends[-1]["attempt"])
    assert answer == fleet.client.result(job.id, timeout_s=0).output


def test_the_console_builds_without_redis_and_says_so_without_a_traceback() -> None:
    from toolbag.api.app import create_app
    from toolbag.client import Client

    app = create_app(Client(load_config(), "redis://127.0.0.1:1/0"))  # nothing listens on port 1
    response = TestClient(app, raise_server_exceptions=False).get("/console/login")
    assert response.status_code == 500 and "internal error (ConnectionError)" in response.text
    assert "Traceback" not in response.text


def test_an_admin_previews_and_publishes_a_policy_version(app: object, fleet: InProcessFleet) -> None:
    from toolbag.gateway.live import PolicyStore
    from toolbag.gateway.policy import load_policy_file

    operator = _signed_in(app, fleet, "operator")
    page = operator.get("/console/permissions")
    assert 'id="policy-form"' not in page.text
    assert operator.post("/console/permissions/preview", data={"csrf": _csrf(page.text), "policy": "x"}
                         ).status_code == 403
    admin = _signed_in(app, fleet, "admin", "pat")
    page = admin.get("/console/permissions")
    live = PolicyStore(fleet.store.redis, fleet.store.keys)
    original = live.load()
    assert original is not None
    bad = admin.post("/console/permissions/preview", data={"csrf": _csrf(page.text), "policy": "version: [1"})
    assert bad.status_code == 400 and 'id="policy-error"' in bad.text
    text = original.text.replace(f"version: {original.version}", f"version: {original.version + 1}", 1) + (
        "\n  - id: analyst-writes\n    agents: [analyst]\n    models: [claude-haiku]\n    tools: [kv.set]\n")
    previewed = admin.post("/console/permissions/preview", data={"csrf": _csrf(page.text), "policy": text})
    assert previewed.status_code == 200, previewed.text
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td><td class=\"yes\">", previewed.text)
    assert rows == [("analyst", "claude-haiku", "kv.set")]
    assert live.load().version == original.version  # type: ignore[union-attr]  # a preview publishes nothing
    try:
        done = admin.post("/console/permissions/publish", data={"csrf": _csrf(page.text), "policy": text})
        assert done.status_code == 200 and 'id="published"' in done.text
        assert live.load().version == original.version + 1  # type: ignore[union-attr]
        again = admin.post("/console/permissions/publish", data={"csrf": _csrf(page.text), "policy": original.text})
        assert again.status_code == 409 and "older than the live version" in again.text
        assert any(e["agent"] == "pat" for e in _console_audit(fleet, "policy-publish"))
    finally:
        live.publish(load_policy_file(REPO / "policy.yaml"), force=True)


@pytest.mark.parametrize(("name", "data", "field", "message"), [
    ("t.csv", b"\xff\xfe\x00\x01garbage,\xff\n1,2\n", "file", "the file is not UTF-8 text"),
    ("t.csv", b"a,a\n1,2\n", "file", "t.csv: column names must be unique; repeated: a"),
    ("t.csv", b"subject,body\nx,y\n", "id_column", "no column 'ticket'"),
    ("t.jsonl", b"", "file", "the file is empty"),
])
def test_a_bad_upload_is_a_message_next_to_its_field(fleet: InProcessFleet, tmp_path: Path, name: str,
                                                     data: bytes, field: str, message: str) -> None:
    from toolbag.console.bulk import BulkRunError, BulkRuns

    runs = BulkRuns(fleet.client, tmp_path)
    with pytest.raises(BulkRunError) as refused:
        runs.create(filename=name, data=data, skill="triage-ticket", id_column="ticket" if field == "id_column"
                    else "", who="tess")
    assert refused.value.field == field and message in refused.value.message, refused.value.message
    assert str(tmp_path) not in refused.value.message and not list(tmp_path.iterdir())
