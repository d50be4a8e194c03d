"""The Content-Security-Policy: on every kind of answer, no inline script or event handler in the templates, and
no violation (and a working print button) on the pages in a real browser."""

import re
from pathlib import Path

import pytest
from browser import all_ready
from django.contrib.auth import get_user_model
from django.http import HttpResponse
from django.test import Client, RequestFactory
from test_reading import make_reader, new_study, next_task, read
from test_training import one_thread  # noqa: F401 (autouse: tiny networks run faster on one thread)

from readerstudy.content_security import content_security_policy
from readerstudy.studies.simulation import simulate_reads

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
PASSWORD = "a-long-test-password"


def directives(response) -> dict[str, list[str]]:
    """The response's policy as {directive: sources}; {} without one."""
    parts = (p.split() for p in response.get("Content-Security-Policy", "").split(";") if p.strip())
    return {name: sources for name, *sources in parts}


# --- the header -----------------------------------------------------------------------------------------------


@pytest.fixture
def world(eight_lesions):
    """A reader in an open study, and its owner (a superuser) with a closed study of simulated reads."""
    reader = make_reader("r1")
    owner = get_user_model().objects.create_superuser("owner", password="x")
    study = new_study(eight_lesions, [reader], owner=owner)
    simulated = [make_reader("r2", "general"), make_reader("r3", "academic")]
    results = new_study(eight_lesions, simulated, name="Results", is_open=False, owner=owner)
    simulate_reads(results)
    return study, results, reader, owner


@pytest.mark.django_db
def test_every_kind_of_answer_carries_the_policy(world, settings):
    study, results, reader, owner = world
    settings.ROOT_URLCONF = "failing_urls"  # the project's URLs plus two that fail
    anonymous, as_reader, as_owner = Client(raise_request_exception=False), Client(), Client()
    as_reader.force_login(reader.user)
    as_owner.force_login(owner)
    task = next_task(as_reader, study)
    answers = {
        "login page": (anonymous.get("/accounts/login/"), 200),
        "home": (as_reader.get("/"), 200),
        "reading page": (as_reader.get(f"/studies/{study.public_id}/read/"), 200),
        "served volume": (as_reader.get(task["viewer"]["sequences"][0]["image"]), 200),
        "API answer": (as_reader.get(f"/api/studies/{study.public_id}/next/"), 200),
        "API write": (read(as_reader, study, task["task"]), 201),
        "dashboard": (as_owner.get(f"/studies/{results.public_id}/dashboard/"), 200),
        "report": (as_owner.get(f"/studies/{results.public_id}/report/"), 200),
        "admin page": (as_owner.get("/admin/"), 200),
        "admin change list": (as_owner.get("/admin/studies/readerstudy/"), 200),
        "CSRF refusal": (Client(enforce_csrf_checks=True).post("/accounts/login/"), 403),
        "404 page": (anonymous.get("/no-such-page/"), 404),
        "API 404": (anonymous.get("/api/no-such-thing/"), 404),
        "500 page": (anonymous.get("/fail/"), 500),
    }
    assert {name: r.status_code for name, (r, _) in answers.items()} == {n: s for n, (_, s) in answers.items()}
    for name, (response, _) in answers.items():
        policy = directives(response)
        assert policy.get("script-src") == ["'self'"], name
        assert policy.get("default-src") == ["'self'"] and policy.get("object-src") == ["'none'"], name
        assert policy.get("frame-ancestors") == ["'none'"] and policy.get("form-action") == ["'self'"], name


def test_a_policy_set_by_the_view_is_kept():
    own = "default-src 'none'; sandbox"
    middleware = content_security_policy(lambda request: HttpResponse(headers={"Content-Security-Policy": own}))
    assert middleware(RequestFactory().get("/"))["Content-Security-Policy"] == own


# --- the templates --------------------------------------------------------------------------------------------

HANDLER = re.compile(r"<[^>]*\son\w+\s*=", re.IGNORECASE)
JAVASCRIPT_URL = re.compile(r"""\b(?:href|src|action|formaction)\s*=\s*["']?\s*javascript:""", re.IGNORECASE)
SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.IGNORECASE | re.DOTALL)
DATA = re.compile(r"""\btype\s*=\s*["']?application/(?:ld\+)?json""", re.IGNORECASE)


def inline_code(html: str) -> list[str]:
    """The inline event handlers, ``javascript:`` URLs and inline executable scripts in ``html`` (a ``<script>``
    without ``src`` or with a body; JSON data blocks are not run)."""
    found = [m.group(0) for m in [*HANDLER.finditer(html), *JAVASCRIPT_URL.finditer(html)]]
    for m in SCRIPT.finditer(html):
        attributes, body = m.groups()
        if not DATA.search(attributes) and (body.strip() or not re.search(r"\bsrc\s*=", attributes)):
            found.append(m.group(0)[:80])
    return found


def test_the_check_finds_inline_code():
    assert len(inline_code('<button onclick="go()">')) == 1
    assert len(inline_code("<body\n  onload='go()'>")) == 1
    assert len(inline_code("<script>go()</script>")) == 1
    assert len(inline_code('<script type="module">go()</script>')) == 1
    assert len(inline_code('<a href="javascript:go()">')) == 1
    fine = '<script src="/static/x.js"></script><script type="application/json" id="d">{}</script><p>onion=</p>'
    assert inline_code(fine) == []


def test_no_template_holds_an_inline_script_or_event_handler():
    templates = sorted(TEMPLATES.rglob("*.html"))
    assert templates
    found = {str(t.relative_to(TEMPLATES)): inline_code(t.read_text()) for t in templates}
    assert {name: code for name, code in found.items() if code} == {}


# --- in a real browser ----------------------------------------------------------------------------------------

COLLECT_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener('securitypolicyviolation',
    (e) => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));
window.print = () => { window.printed = true; };
"""


def logged_in_page(browser, live_server, username):
    """A page logged in as ``username``, and the list its policy violations go to: from the
    ``securitypolicyviolation`` events and from the console."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.add_init_script(COLLECT_VIOLATIONS)
    reported = []
    page.on("console", lambda m: "Content Security Policy" in m.text and reported.append(m.text))
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("[name=username]", username)
    page.fill("[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    return page, reported


def violations(page, reported) -> list[str]:
    return page.evaluate("window.cspViolations") + reported


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_pages_run_under_the_policy_without_a_violation(browser, live_server, predicted):
    reader = make_reader("reader-a", "resident")
    reader.user.set_password(PASSWORD)
    reader.user.save()
    owner = get_user_model().objects.create_superuser("owner", password=PASSWORD)
    study = new_study(predicted, [reader], name="Policy study", feedback="model", owner=owner)
    simulated = [make_reader("sim1"), make_reader("sim2", "academic")]
    results = new_study(predicted, simulated, name="Results study", design="sequential", is_open=False, owner=owner)
    simulate_reads(results)

    # The reading page: the viewer draws, a read goes in by keyboard, the model's output and saliency show.
    page, reported = logged_in_page(browser, live_server, "reader-a")
    page.click(f"a[href='/studies/{study.public_id}/read/']")
    page.wait_for_function(all_ready, timeout=60_000)
    for key in ("5", "4", "8", "0", "Enter"):
        page.keyboard.press(key)
    # Arrow functions: playwright evaluates a bare expression again at each poll, which the policy forbids.
    page.wait_for_function("() => liverread.mode === 'feedback' && !document.getElementById('reveal').hidden")
    page.wait_for_function("() => document.getElementById('status').dataset.kind === 'ready'")
    assert violations(page, reported) == [], "reading page"

    # The study admin's pages: the dashboard's inline SVG figures keep their styles and images; the admin.
    page, reported = logged_in_page(browser, live_server, "owner")
    page.goto(f"{live_server.url}/studies/{results.public_id}/dashboard/")
    background = "getComputedStyle(document.querySelector('#roc svg path[style]')).fill"
    assert page.evaluate(background) == "rgb(255, 255, 255)"  # black were style attributes blocked
    assert page.locator("#confusion svg image").count() > 0  # matplotlib's raster: a data: URL
    assert violations(page, reported) == [], "dashboard"
    for path in ("/admin/", "/admin/studies/readerstudy/", "/admin/studies/readerstudy/add/"):
        page.goto(f"{live_server.url}{path}")
        assert violations(page, reported) == [], path

    # The report: its print button still prints (window.print is stubbed by COLLECT_VIOLATIONS).
    page.goto(f"{live_server.url}/studies/{results.public_id}/report/")
    assert page.locator("figure svg").count() >= 3
    page.click("#print")
    assert page.evaluate("window.printed") is True
    assert violations(page, reported) == [], "report"

    # The API docs: Swagger UI's set-up script is a file of its own, so the operations are listed.
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert violations(page, reported) == [], "API docs"
