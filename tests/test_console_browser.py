"""The web console end to end: a real headless Chromium (selenium + Debian's chromium and chromedriver) against
``toolbag api`` on a real fleet (Celery workers, supervisor, Redis) answered by the simulator.

Chromium missing is a failure, not a skip: ``scripts/install-test-tools.sh`` installs it. Every page visited is
saved as a 1280×800 screenshot under ``test-output/console/`` (or ``$TOOLBAG_TEST_OUTPUT/console``).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select

from tests.fleet import REPO, Fleet, free_port, running_fleet
from toolbag.api.app import create_app
from toolbag.console import ConsoleKeyStore
from toolbag.console.app import SESSION_COOKIE
from toolbag.jobs import JobResult, JobStatus

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = Path(os.environ.get("TOOLBAG_TEST_OUTPUT", REPO / "test-output")) / "console"
WAIT_S = 30.0


@dataclass(frozen=True)
class Site:
    fleet: Fleet
    url: str
    keys: dict[str, str]  # role -> secret
    tmp: Path


@pytest.fixture(scope="module")
def site(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("console")
    skills = tmp / "skills"
    shutil.copytree(REPO / "skills", skills)  # the skill-edit test saves into this copy, never the repository
    env = {"TOOLBAG_SKILLS_DIR": str(skills), "TOOLBAG_CONSOLE_RUNS_DIR": str(tmp / "runs")}
    with pytest.MonkeyPatch.context() as patch, running_fleet(redis_server, tmp, concurrency=4, env=env) as fleet:
        for name, value in env.items():
            patch.setenv(name, value)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(fleet.client), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        store = ConsoleKeyStore(fleet.client.store.redis, fleet.client.store.keys)
        keys = {role: store.create(f"{role}-e2e", role)[1] for role in ("viewer", "operator", "admin")}
        try:
            yield Site(fleet, f"http://127.0.0.1:{port}/console", keys, tmp)
        finally:
            server.should_exit = True
            thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: run scripts/install-test-tools.sh (as root) to install "
                    "Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--hide-scrollbars"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    except WebDriverException as err:
        pytest.fail(f"chromium did not start: {err.msg}")
    driver.set_window_size(1280, 800)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def sign_in(driver: WebDriver, site: Site, role: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{site.url}/login")
    driver.find_element(By.ID, "key").send_keys(site.keys[role])
    submit(driver, "#login button")
    until(lambda: text_of(driver, "who") == f"{role}-e2e · {role}", "the fleet page after sign-in")
    assert driver.current_url.endswith("/console/fleet")


def stale(element: Any) -> bool:
    """Whether ``element`` belongs to a page the browser has left."""
    try:
        element.is_enabled()
    except WebDriverException:  # stale, or Chromium's "node does not belong to the document" mid-navigation
        return True
    return False


def text_of(driver: WebDriver, element_id: str) -> str:
    """The element's text, or "" while the page has none (it may be reloading)."""
    try:
        found = driver.find_elements(By.ID, element_id)
        return found[0].text if found else ""
    except WebDriverException:  # the page went away between the find and the read
        return ""


def submit(driver: WebDriver, css: str) -> None:
    """Click ``css`` and wait until the browser has left the page it was on."""
    clicked = driver.find_element(By.CSS_SELECTOR, css)
    clicked.click()
    until(lambda: stale(clicked), f"the page after clicking {css}")


def until(check: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_sign_in_with_a_bad_key_then_a_good_one(browser: WebDriver, site: Site) -> None:
    browser.get(f"{site.url}/fleet")
    assert browser.current_url.endswith("/console/login")
    browser.find_element(By.ID, "key").send_keys("tbc-wrong")
    submit(browser, "#login button")
    assert browser.find_element(By.ID, "key-error").text == "unknown or revoked console key"
    shot(browser, "login")
    sign_in(browser, site, "admin")
    assert browser.find_element(By.ID, "queues").is_displayed()


def test_see_a_job_run_through(browser: WebDriver, site: Site) -> None:
    sign_in(browser, site, "operator")
    job = site.fleet.client.submit("summarize", input={"text": "[[sim:refusal@claude-*]] The export button "
                                                               "does nothing. <b>not bold</b>"},
                                   tier="interactive", caller="browser-e2e")
    browser.get(f"{site.url}/jobs/{job.id}")

    until(lambda: text_of(browser, "job-status") == "succeeded", f"job {job.id} to succeed on its page (the "
          "page reloads itself when the live stream says it is done)")
    timeline = browser.find_element(By.ID, "timeline").text
    assert "refused" in timeline and "reroute" in timeline and "→ ok" in timeline
    assert "<b>not bold</b>" in browser.find_element(By.ID, "input").text  # shown as text, not markup
    assert browser.find_element(By.ID, "output").text not in ("", "–")
    shot(browser, "job")
    browser.get(f"{site.url}/jobs?caller=browser-e2e")
    assert job.id in browser.find_element(By.ID, "jobs").text
    shot(browser, "jobs")
    browser.get(f"{site.url}/fleet")
    assert int(browser.find_element(By.ID, "finished-hour").text) >= 1
    shot(browser, "fleet")


def test_the_job_page_shows_which_path_each_attempt_took(browser: WebDriver, site: Site) -> None:
    """A batch-tier job whose first attempt went through a vendor batch that expired, and whose second was a
    real-time call, written through the store's fenced scripts on a queue no worker of this fleet consumes."""
    from dataclasses import replace

    from toolbag.client import JobRequest
    from toolbag.jobs import AttemptRecord, DecisionRecord

    client, store, queue, batch_id = site.fleet.client, site.fleet.client.store, "display.batch", "batch_e2e_01"
    prepared = client.prepare_each([JobRequest("summarize", {"text": "paths"}, tier="batch", caller="paths-e2e")])[0]
    assert not isinstance(prepared, Exception), prepared
    job = replace(prepared, queue=queue, fields={**prepared.fields, "queue": queue})
    created, job_id = store.submit(job)
    assert created
    model, provider = job.fields["model"], job.fields["provider"]

    def attempt(n: int, outcome: str, **path: str) -> str:
        return AttemptRecord(n=n, model=model, provider=provider, outcome=outcome, latency_s=0.5, **path).to_json()

    token = store.get(job_id).token
    assert store.claim(job_id, token, queue, 30, "paths-e2e") is not None
    assert store.end_attempt(job_id, token, "expired", attempt(1, "expired", path="vendor_batch",
                                                                batch_id=batch_id)).ok
    decision = DecisionRecord("retry", "the vendor batch expired; real time meets the deadline", model).to_json()
    assert store.dispatch(job_id, token, model=model, provider=provider, queue=queue, record_json=decision).ok
    token = store.get(job_id).token
    assert store.claim(job_id, token, queue, 30, "paths-e2e") is not None
    assert store.complete(job_id, token, "a summary", {"provider": provider, "model": model, "path": "realtime",
                                                       "cost_usd": 0.0}, attempt(2, "ok", path="realtime")).ok

    sign_in(browser, site, "viewer")
    browser.get(f"{site.url}/jobs/{job_id}")
    until(lambda: text_of(browser, "job-status") == "succeeded", "the job page")
    paths = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#timeline .path")]
    assert paths == [f"vendor batch {batch_id}", "real time"], paths
    assert text_of(browser, "job-path") == "real time"
    shot(browser, "job-paths")


def test_resolve_an_escalation_and_the_waiting_caller_receives_it(browser: WebDriver, site: Site) -> None:
    client = site.fleet.client
    job = client.submit(skill="classify", input={"text": "[[sim:refusal]] Charged twice for March.",
                                                 "labels": ["billing", "bug"]}, caller="waiting-caller")
    received: list[JobResult] = []
    waiter = threading.Thread(target=lambda: received.append(job.result(timeout_s=120, until_resolved=True)),
                              daemon=True)
    waiter.start()
    until(lambda: client.store.get(job.id).status is JobStatus.ESCALATED, "the job to escalate")
    sign_in(browser, site, "operator")
    browser.get(f"{site.url}/escalations")

    def listed() -> bool:
        browser.refresh()
        return job.id in browser.find_element(By.ID, "inbox").text

    until(listed, "the inbox to list it")
    shot(browser, "escalations")
    browser.find_element(By.LINK_TEXT, job.id).click()
    until(lambda: text_of(browser, "why"), "the escalation page")
    assert "refused" in browser.find_element(By.ID, "why").text
    Select(browser.find_element(By.ID, "f-confidence")).select_by_visible_text("high")
    browser.find_element(By.ID, "f-reason").send_keys("The customer was charged twice.")
    submit(browser, "#resolve-form button")
    assert browser.find_element(By.ID, "error-label").text == "output.label: is required but missing"
    assert waiter.is_alive() and not received
    shot(browser, "escalation-invalid")
    browser.find_element(By.ID, "f-label").send_keys("billing")
    submit(browser, "#resolve-form button")
    until(lambda: "resolved" in text_of(browser, "message"), "the resolved notice")
    waiter.join(30)
    assert received and received[0].ok, received
    assert received[0].output == {"label": "billing", "confidence": "high",
                                  "reason": "The customer was charged twice."}
    assert received[0].model == "console:operator-e2e"


def test_a_viewer_is_refused_an_action_even_past_the_disabled_button(browser: WebDriver, site: Site) -> None:
    job = site.fleet.client.submit("summarize", input={"text": "[[sim:rate_limit:60]] waits a minute"}, tier="batch",
                                   caller="viewer-e2e")
    sign_in(browser, site, "viewer")
    browser.get(f"{site.url}/jobs/{job.id}")
    until(lambda: browser.find_element(By.ID, "live").is_displayed(), "the live text box (its script ran)")
    button = browser.find_element(By.CSS_SELECTOR, "#cancel-form button")
    assert not button.is_enabled()
    browser.execute_script("arguments[0].removeAttribute('disabled')", button)
    submit(browser, "#cancel-form button")
    refusal = until(lambda: [e.text for e in browser.find_elements(By.ID, "refused")], "the refusal page")[0]
    assert refusal == "your role (viewer) cannot do this; it needs operator"
    shot(browser, "viewer-refused")
    assert not site.fleet.client.store.get(job.id).status.terminal
    site.fleet.client.cancel(job.id)


def test_every_other_page_renders(browser: WebDriver, site: Site) -> None:
    sign_in(browser, site, "admin")
    browser.get(f"{site.url}/permissions?agent=analyst&model=claude-haiku&tool=kv.get")
    assert "ALLOW" in browser.find_element(By.ID, "why").text
    shot(browser, "permissions")
    browser.get(f"{site.url}/keys")
    browser.find_element(By.ID, "ck-name").send_keys("newcomer")
    submit(browser, "#console-key-form button")
    secret = browser.find_element(By.ID, "new-secret").text
    assert secret.startswith("tbc-")
    browser.get(f"{site.url}/keys")
    assert secret not in browser.page_source
    shot(browser, "keys")


def test_upload_a_50_row_csv_and_download_the_results(browser: WebDriver, site: Site) -> None:
    rows = ["ticket_id,subject,body,customer_plan"] + [
        f"T-{i},Export broken {i},The export button does nothing (ticket {i}).,pro" for i in range(1, 51)]
    upload = site.tmp / "tickets.csv"
    upload.write_text("\n".join(rows) + "\n")
    sign_in(browser, site, "operator")
    browser.get(f"{site.url}/bulk")
    browser.find_element(By.ID, "upload-file").send_keys(str(upload))
    Select(browser.find_element(By.ID, "upload-skill")).select_by_visible_text("triage-ticket")
    browser.find_element(By.ID, "upload-id").send_keys("ticket_id")
    submit(browser, "#upload-form button")
    assert browser.find_element(By.ID, "dry-total").text == "50"
    assert browser.find_element(By.ID, "dry-valid").text == "50"
    shot(browser, "bulk-dry-run")
    submit(browser, "#start-button")
    until(lambda: text_of(browser, "run-state") == "done", "the run to finish (its page refreshes itself)",
          timeout_s=90)
    assert browser.find_element(By.ID, "count-ok").text == "50"
    shot(browser, "bulk-done")
    link = browser.find_element(By.ID, "download-results").get_attribute("href")
    cookie = browser.get_cookie(SESSION_COOKIE)
    assert link and cookie
    request = urllib.request.Request(link, headers={"cookie": f"{SESSION_COOKIE}={cookie['value']}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/csv")
        got = list(csv.DictReader(io.StringIO(response.read().decode("utf-8-sig"))))
    assert sorted(r["ticket_id"] for r in got) == sorted(f"T-{i}" for i in range(1, 51))
    browser.get(f"{site.url}/bulk")
    shot(browser, "bulk")


def test_edit_a_skill_into_an_invalid_state_then_fix_and_save(browser: WebDriver, site: Site) -> None:
    sign_in(browser, site, "operator")
    browser.get(f"{site.url}/skills")
    shot(browser, "skills")
    browser.get(f"{site.url}/skills/summarize")
    schema = browser.find_element(By.ID, "file-schema-json")
    original = schema.get_attribute("value") or ""
    typed = "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true}))"
    browser.execute_script(typed, schema, original.replace("{", "{ oops", 1))  # as if typed: checked as you type
    until(lambda: "problem" in browser.find_element(By.ID, "live-check").text, "the as-you-type check")
    problems = browser.find_element(By.ID, "problems-schema-json").text
    assert "schema.json" in problems and "fix:" in problems
    shot(browser, "skill-invalid")
    before = browser.find_element(By.ID, "skill-form")
    browser.find_element(By.ID, "check-button").click()  # the same problems from the server-rendered check
    until(lambda: stale(before), "the checked page")
    assert "fix:" in browser.find_element(By.ID, "problems-schema-json").text
    browser.execute_script(typed, browser.find_element(By.ID, "file-schema-json"), original)
    until(lambda: browser.find_element(By.ID, "live-check").text == "no problems", "the problems to clear")
    md = browser.find_element(By.ID, "file-SKILL-md")
    browser.execute_script("arguments[0].value = arguments[0].value + '\\n- Keep it short.\\n'", md)
    submit(browser, "#save-button")
    saved = browser.find_element(By.ID, "saved").text
    assert "Saved." in saved and "→" in saved
    assert "changed" in browser.find_element(By.ID, "review").text
    assert "Keep it short." in (site.tmp / "skills" / "summarize" / "SKILL.md").read_text()
    shot(browser, "skill-saved")
    submit(browser, "#evals-link")
    submit(browser, "#evals-button")

    def evaluated() -> str:
        state = text_of(browser, "evals-state")  # the page refreshes itself while they run
        return "" if state.startswith("running") else state

    assert until(evaluated, "the evals", timeout_s=120) == "done: all pass"
    table = browser.find_element(By.ID, "evals").text
    for provider in site.fleet.config.providers:
        assert provider in table
    shot(browser, "skill-evals")
