"""The sessions page in a real headless Chromium (issue 15): an operator logs in, finds a
runaway query running on another FE, presses Kill, and the row goes while the client loses
its connection (2013, as with MariaDB).

Debian's chromium (``apt-get install chromium``, see .ci/run) driven by Playwright; browsers are
never downloaded."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO, Cluster, Running, error_code, stopped, wait_for, wait_running

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOT = REPO / "docs" / "sessions-page.png"

pytestmark = [
    pytest.mark.slow,  # a real browser: CI runs it, `-m "not slow"` skips it
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"),
]


@pytest.fixture(scope="module")
def operator(cluster3: Cluster) -> tuple[str, str]:
    """An admin who has never typed SQL: the account is made for them."""
    name = f"ops_{uuid.uuid4().hex[:6]}"
    cluster3.fes[0].query(f"CREATE USER '{name}' IDENTIFIED BY 's3cret'")
    cluster3.fes[0].query(f"GRANT ADMIN_PRIV ON *.*.* TO '{name}'")
    for fe in cluster3.fes:
        wait_for(lambda fe=fe: fe.query("SELECT 1", name, "s3cret"), 5, what=f"{name} known on {fe.name}")
    return name, "s3cret"


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def test_operator_kills_a_runaway_query_on_another_fe(cluster3: Cluster, operator: Any, browser: Any) -> None:
    from playwright.sync_api import expect

    fe1, fe2, fe3 = cluster3.fes
    name, password = operator
    context = browser.new_context(
        http_credentials={"username": name, "password": password}, viewport={"width": 1440, "height": 900}
    )
    dialogs: list[str] = []
    with contextlib.ExitStack() as stack:
        stack.callback(context.close)
        idle = stack.enter_context(contextlib.closing(fe3.connect()))
        victim = stack.enter_context(contextlib.closing(fe2.connect()))
        other = stack.enter_context(contextlib.closing(fe3.connect()))
        stack.enter_context(contextlib.closing(fe1.connect()))  # an idle session on the page's own FE
        vid, oid = victim.thread_id(), other.thread_id()
        run = Running(victim, "SELECT SLEEP(60)")
        other_run = Running(other, "SELECT SLEEP(60)")
        wait_running(fe1, vid)
        wait_running(fe1, oid)

        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
        page.goto(f"{fe1.http_url}/")
        expect(page.locator("#whoami")).to_contain_text(f"{name} (admin) on FE {fe1.address}")
        row = page.locator(f'#sessions tr[data-id="{vid}"]')
        expect(row).to_be_visible()
        expect(row.locator("td").nth(3)).to_have_text(fe2.address)  # the FE column: another FE
        expect(row.locator("td.info")).to_have_text("SELECT SLEEP(60)")
        expect(page.locator(f'#sessions tr[data-id="{idle.thread_id()}"]')).to_be_visible()
        # every FE is listed, healthy, and no banner says one is missing
        for fe in cluster3.fes:
            expect(page.locator(f'#fes tr[data-fe="{fe.address}"] .badge')).to_have_text("up")
        expect(page.locator("#banner")).to_be_hidden()
        # the filters narrow the table to the runaway query
        page.select_option("#f-fe", fe2.address)
        page.select_option("#f-command", "Query")
        page.fill("#f-text", "sleep(60)")
        expect(page.locator("#sessions tbody tr")).to_have_count(1)
        expect(page.locator(f'#sessions tr[data-id="{idle.thread_id()}"]')).to_have_count(0)
        # sorting: a click on a header sorts by it, a second click reverses
        page.click("#f-clear")
        page.click('#sessions th[data-key="fe"]')
        expect(page.locator('#sessions th[data-key="fe"]')).to_have_class("sorted-asc")
        page.click('#sessions th[data-key="fe"]')
        expect(page.locator('#sessions th[data-key="fe"]')).to_have_class("sorted-desc")
        fes_shown = page.locator("#sessions tbody tr td:nth-child(4)").all_inner_texts()
        assert fes_shown == sorted(fes_shown, reverse=True) and fe2.address in fes_shown

        row.locator("button.kill-connection").click()
        expect(row).to_have_count(0, timeout=10_000)  # gone from the page
        assert error_code(run.join(10)) == 2013  # the connection was closed at once, as MariaDB does
        assert not victim.open
        assert len(dialogs) == 1 and f"KILL CONNECTION {vid}" in dialogs[0] and fe2.address in dialogs[0]
        expect(page.locator("#status")).to_contain_text(f"Killed connection {vid} (owner FE {fe2.address})")
        # the admin sees the kill in the audit, received on fe1, carried out by fe2
        audit_row = page.locator("#audit tbody tr", has_text=str(vid)).first
        expect(audit_row).to_contain_text(name)
        expect(audit_row).to_contain_text(fe2.address)
        expect(audit_row).to_contain_text("ok")
        expect(audit_row.locator("td:nth-child(6)")).to_have_text("root")  # the victim's user, from its owner
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        # Kill query stops the statement and leaves the connection
        other_row = page.locator(f'#sessions tr[data-id="{oid}"]')
        other_row.locator("button.kill-query").click()
        assert error_code(other_run.join(10)) == 1317
        expect(other_row.locator("td").nth(5)).to_have_text("Sleep", timeout=10_000)
        expect(other_row.locator("button.kill-query")).to_have_count(0)
        assert len(dialogs) == 2 and f"KILL QUERY {oid}" in dialogs[1]


def test_a_non_admin_sees_only_their_sessions_and_a_refused_kill_says_why(cluster3: Cluster, browser: Any) -> None:
    from playwright.sync_api import expect

    fe1, fe2, _ = cluster3.fes
    name = f"dev_{uuid.uuid4().hex[:6]}"
    fe1.query(f"CREATE USER '{name}' IDENTIFIED BY 'pw'")
    wait_for(lambda: fe2.query("SELECT 1", name, "pw"), 5, what="user known on fe2")
    context = browser.new_context(http_credentials={"username": name, "password": "pw"})
    with contextlib.closing(fe2.connect(name, "pw")) as own, contextlib.closing(fe2.connect()) as roots:
        page = context.new_page()
        page.goto(f"{fe1.http_url}/")
        expect(page.locator(f'#sessions tr[data-id="{own.thread_id()}"]')).to_be_visible()
        expect(page.locator(f'#sessions tr[data-id="{roots.thread_id()}"]')).to_have_count(0)
        expect(page.locator("#audit-section")).to_be_hidden()
        assert "(admin)" not in page.inner_text("#whoami")
        # a wrong password gets no page
        stranger = browser.new_context(http_credentials={"username": name, "password": "wrong"})
        response = stranger.new_page().goto(f"{fe1.http_url}/")
        assert response is not None and response.status == 401
        stranger.close()
    context.close()


def test_the_banner_names_an_fe_that_does_not_answer(cluster3: Cluster, operator: Any, browser: Any) -> None:
    from playwright.sync_api import expect

    fe1, _, fe3 = cluster3.fes
    name, password = operator
    context = browser.new_context(http_credentials={"username": name, "password": password})
    with contextlib.closing(fe3.connect()) as on_fe3:
        page = context.new_page()
        page.goto(f"{fe1.http_url}/")
        expect(page.locator(f'#sessions tr[data-id="{on_fe3.thread_id()}"]')).to_be_visible()
        with stopped(fe3):
            expect(page.locator("#banner")).to_contain_text(f"FE {fe3.address} did not answer", timeout=10_000)
            expect(page.locator(f'#fes tr[data-fe="{fe3.address}"] .badge')).to_have_text("not answering")
            expect(page.locator(f'#sessions tr[data-id="{on_fe3.thread_id()}"]')).to_have_count(0)
        expect(page.locator("#banner")).to_be_hidden(timeout=10_000)
        expect(page.locator(f'#fes tr[data-fe="{fe3.address}"] .badge')).to_have_text("up")
        expect(page.locator(f'#sessions tr[data-id="{on_fe3.thread_id()}"]')).to_be_visible()
    context.close()


def test_screenshot_is_where_the_readme_says() -> None:
    assert "docs/sessions-page.png" in (REPO / "README.md").read_text()
    assert Path(SCREENSHOT).is_file()


@contextlib.contextmanager
def evil_site(pages: dict[str, str]) -> Iterator[str]:
    """Another origin: a tiny HTTP server on another port of this host (the same *site*, which a
    same-site check alone would let through), serving the given pages."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_cross_site_page_cannot_make_the_browser_kill(cluster3: Cluster, operator: Any, browser: Any) -> None:
    """The operator is logged in to the sessions page (the browser holds the credentials); a page
    from another origin POSTs to the FE's kill URLs, by fetch and by a form: the FE refuses both
    (403) and the session lives. The same page's own Kill button works (the test above)."""
    fe1, fe2 = cluster3.fes[0], cluster3.fes[1]
    name, password = operator
    context = browser.new_context(http_credentials={"username": name, "password": password})
    with contextlib.ExitStack() as stack:
        stack.callback(context.close)
        victim = stack.enter_context(contextlib.closing(fe2.connect()))
        vid = victim.thread_id()
        run = Running(victim, "SELECT SLEEP(60)")
        qid = wait_running(fe1, vid)[10]
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.goto(f"{fe1.http_url}/")  # logged in: the browser now sends the credentials to the FE
        page.wait_for_selector(f'#sessions tr[data-id="{vid}"]')
        assert not [c for c in console if "404" in c or "favicon" in c], console  # no favicon 404
        kill_url = f"{fe1.http_url}/api/sessions/{vid}/kill?kind=connection"
        doris_url = f"{fe1.http_url}/rest/v2/manager/query/kill/{qid}?is_all_node=true"
        fetches = "".join(
            f'fetch("{url}", {{method: "POST", mode: "no-cors", credentials: "include"}});'
            for url in (kill_url, doris_url)
        )
        pages = {
            "/fetch": f"<!doctype html><script>{fetches}</script>",
            "/form": f'<!doctype html><form method="POST" action="{kill_url}"></form>'
            "<script>document.forms[0].submit()</script>",
        }
        with evil_site(pages) as evil:
            answers = []
            with page.expect_response(lambda r: "/kill" in r.url and r.url.startswith(fe1.http_url)) as first:
                page.goto(f"{evil}/fetch")
            answers.append(first.value)
            page.wait_for_timeout(200)  # the second fetch
            with page.expect_response(lambda r: r.url == kill_url) as form:
                page.goto(f"{evil}/form")
            answers.append(form.value)
            for answer in answers:
                assert answer.status == 403, (answer.url, answer.status)
                sent = answer.request.all_headers()
                assert sent.get("origin") == evil, sent  # what the FE refused it for
            assert "cross-origin request refused" in page.content() or "cross-site request refused" in page.content()
        # the session lives: still running its statement, on its FE
        assert run.thread.is_alive() and wait_running(fe1, vid)
        victim_still = fe1.query(f"SELECT ID FROM information_schema.processlist WHERE ID = {vid}")
        assert victim_still == ((vid,),)
