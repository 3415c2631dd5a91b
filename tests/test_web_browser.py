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
