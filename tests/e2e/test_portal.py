"""The developer portal (/developer) in a real headless Chromium (Debian's, driven by
Playwright): sign in, mint a key and read it off the page, call the API with it, see the
request in usage and on the chart, export CSV, revoke it through the UI and see the API
refuse it; a normal key sees only itself; sessions and CSRF; a phone-sized screen.

Screenshots of every page land in $JUSINFER_ARTIFACTS/portal (default
target/test-artifacts/portal)."""

import csv
import datetime
import io
import os
import re
import time
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from conftest import ROOT, start_gateway

CHROMIUM = os.environ.get("JUSINFER_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("JUSINFER_ARTIFACTS", ROOT / "target/test-artifacts")) / "portal"
KEY_RE = re.compile(r"^jinf_[A-Za-z0-9]{40}$")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            # The machine has no internet: keep Chromium from trying to reach it.
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield b
        b.close()


@pytest.fixture(scope="module")
def pgw(sim, tmp_path_factory):
    g = start_gateway(sim.url, tmp_path_factory.mktemp("portal"), name="portal")
    g.minted = []
    yield g
    g.proc.stop()
    log = g.proc.stderr()
    for secret in [g.key, *g.minted]:
        assert secret not in log, "a key reached the log"
    assert "portal: signed in" in log


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def admin_mint(gw, **body):
    r = httpx.post(gw.url + "/admin/keys", headers={"Authorization": f"Bearer {gw.key}"}, json=body)
    assert r.status_code == 201, r.text
    gw.minted.append(r.json()["key"])
    return r.json()


def sign_in(browser, gw, key, **ctx):
    context = browser.new_context(**ctx)
    page = context.new_page()
    page.goto(gw.url + "/developer")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(gw.url + "/developer/keys")
    return context, page


def wait_for(check, what, timeout=10.0):
    """Polls `check` until it returns something truthy (the ledger writes in batches)."""
    deadline = time.time() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def labelled_controls_check(page):
    """Every visible form control has an accessible name (a label or aria-label)."""
    unnamed = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter(e => e.type !== 'hidden')
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                     && !(e.tagName === 'BUTTON' && e.textContent.trim()))
        .map(e => e.outerHTML)""")
    assert page.locator("select, input:not([type=hidden])").count() > 0
    assert unnamed == [], unnamed


def no_horizontal_scroll(page):
    # A phone widens its layout viewport to fit content that overflows, so compare with
    # the screen, not only with innerWidth.
    widths = page.evaluate("[screen.width, window.innerWidth, document.documentElement.scrollWidth]")
    assert widths[2] <= widths[1] + 1 and widths[1] <= widths[0] + 1, f"the page scrolls sideways: {widths}"


def test_admin_signs_in_mints_uses_sees_usage_and_revokes(browser, pgw, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=pgw.url)
    page = context.new_page()
    requested = []
    page.on("request", lambda r: requested.append(r.url))

    # Sign in, by keyboard: the key field has focus, Enter submits.
    page.goto(pgw.url + "/developer")
    assert page.title() == "Sign in · jusinfer"
    labelled_controls_check(page)
    shot(page, "01-sign-in")
    assert page.evaluate("document.activeElement.id") == "key"
    page.keyboard.type(pgw.key)
    page.keyboard.press("Enter")
    page.wait_for_url(pgw.url + "/developer/keys")
    assert "admin" in page.locator("#signed-in-as").inner_text()
    shot(page, "02-keys")
    labelled_controls_check(page)

    # The key is in no URL, no script-readable cookie, no web storage.
    session = [c for c in context.cookies() if c["name"] == "jinf_session"]
    assert len(session) == 1
    assert session[0]["httpOnly"] and session[0]["sameSite"] == "Strict"
    assert session[0]["path"] == "/developer"
    assert pgw.key not in session[0]["value"]
    assert "jinf_session" not in page.evaluate("document.cookie")
    assert pgw.key not in page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)")
    assert all(pgw.key not in u for u in requested)

    # Mint a key with every setting.
    page.get_by_label("Name").fill("portal-test")
    page.get_by_label("Budget (USD)").fill("5")
    page.get_by_label("Budget period").select_option("monthly")
    page.get_by_label("Requests per minute").fill("100")
    page.get_by_label("Tokens per minute").fill("100000")
    page.get_by_label("Allowed models").fill("text, sim/*")
    page.get_by_label("Expires").select_option("30d")
    page.get_by_role("button", name="Mint key").click()
    new_key = page.locator("#new-key").input_value()
    assert KEY_RE.match(new_key), new_key
    pgw.minted.append(new_key)
    assert "shown only this once" in page.locator(".minted .warning").inner_text()
    shot(page, "03-key-minted")

    # The copy button puts it on the clipboard.
    page.get_by_role("button", name="Copy").click()
    page.wait_for_function("document.getElementById('copy-status').textContent.length > 0")
    assert page.evaluate("navigator.clipboard.readText()") == new_key

    row = page.locator("#keys tbody tr", has_text="portal-test")
    key_id = row.get_attribute("data-key-id")
    assert new_key[:12] in row.inner_text()
    text = row.inner_text()
    assert "100 RPM" in text and "100,000 TPM" in text and "models: text, sim/*" in text
    assert "$0 of $5.00 this month" in text and "active" in text
    # A monthly budget starts again on the 1st, 00:00 UTC.
    today = datetime.datetime.now(datetime.timezone.utc).date()
    first_next = (today.replace(day=1) + datetime.timedelta(days=32)).replace(day=1)
    assert f"resets {first_next:%Y-%m-%d} 00:00:00 UTC" in text, text

    # Shown once: the keys page no longer has it.
    page.goto(pgw.url + "/developer/keys")
    assert new_key not in page.content()

    # Call the API with it: once plainly, once streamed.
    c = openai.OpenAI(base_url=pgw.url + "/v1", api_key=new_key, max_retries=0)
    r = c.chat.completions.create(model="text", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content
    chunks = list(c.chat.completions.create(model="text", messages=[{"role": "user", "content": "hi"}],
                                            stream=True, stream_options={"include_usage": True}))
    assert chunks
    priced = c.chat.completions.create(model="sim/length", messages=[{"role": "user", "content": "hi"}])
    assert priced.usage.total_tokens > 0
    with pytest.raises(openai.PermissionDeniedError):
        c.chat.completions.create(model="smart", messages=[{"role": "user", "content": "hi"}])

    # Usage, filtered to the new key: the requests in the table and on the chart.
    page.get_by_role("link", name="Usage").click()
    page.get_by_label("Key").select_option(key_id)
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(f".*key={key_id}"))

    def four_rows():
        page.reload()
        return page.locator("#recent tbody tr[data-request-id]").count() == 4

    wait_for(four_rows, "the key's four requests in the usage table")
    assert f"key={key_id}" in page.url
    recent = page.locator("#recent tbody tr[data-request-id]")
    statuses = sorted(recent.nth(i).locator("span.status").inner_text() for i in range(4))
    assert statuses == ["200", "200", "200", "403"], statuses
    texts = [recent.nth(i).inner_text() for i in range(4)]
    assert any("stream" in t for t in texts), texts
    assert page.locator("#total-requests").inner_text() == "4"
    assert page.locator("#total-errors").inner_text() == "1"
    chart = page.locator("svg#chart-requests")
    assert chart.get_attribute("data-sum") == "4"
    # The bars hold the four (one bar, or two when the requests straddle an hour), the
    # failure stacked on a bar of its own colour.
    bars = page.locator("svg#chart-requests g.bar")
    totals = [float(bars.nth(i).get_attribute("data-total")) for i in range(bars.count())]
    assert sum(totals) == 4 and len([t for t in totals if t]) in (1, 2), totals
    assert page.locator("svg#chart-requests g.bar rect.s3").count() == 1
    failed = page.locator("svg#chart-requests g.bar", has=page.locator("rect.s3"))
    assert "failed 1" in failed.locator("title").text_content()
    tokens = int(float(page.locator("svg#chart-tokens").get_attribute("data-sum")))
    assert page.locator("#total-tokens").inner_text() == f"{tokens:,}"
    # The priced request's cost, in the chart and the totals (sim/length: $2.50/$10 per 1M).
    cost = float(page.locator("svg#chart-cost").get_attribute("data-sum"))
    expected = (priced.usage.prompt_tokens * 2.5 + priced.usage.completion_tokens * 10.0) / 1e6
    assert cost == pytest.approx(expected, rel=1e-6)
    assert page.locator("#by-model tbody tr", has_text="text").count() >= 1
    assert page.locator("#by-key tbody tr", has_text="portal-test").count() == 1
    labelled_controls_check(page)
    shot(page, "04-usage")

    # CSV export of the same view.
    with page.expect_download() as dl:
        page.get_by_role("link", name="Export CSV").click()
    path = tmp_path / "usage.csv"
    dl.value.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert len(rows) == 4
    assert {r["key_name"] for r in rows} == {"portal-test"}
    assert {r["status"] for r in rows} == {"200", "403"}
    ids = {recent.nth(i).get_attribute("data-request-id") for i in range(4)}
    assert sum(float(r["cost_usd"] or 0) for r in rows) == pytest.approx(expected, rel=1e-6)
    assert {r["request_id"] for r in rows} == ids
    ok = [r for r in rows if r["status"] == "200"]
    assert all(int(r["prompt_tokens"]) > 0 and int(r["latency_ms"]) >= 0 for r in ok)
    assert any(r["stream"] == "true" and r["ttft_ms"] for r in ok)

    # Models: routes, strategies, prices, health.
    page.get_by_role("link", name="Models").click()
    smart = page.locator("#models tbody tr[data-model='smart']")
    assert smart.count() == 2
    assert "fallback" in smart.nth(0).inner_text()
    assert "down/text" in smart.nth(0).inner_text() and "sim/text" in smart.nth(1).inner_text()
    length = page.locator("#models tbody tr[data-model='length']").inner_text()
    assert "$2.50 / $10.00" in length and "closed" in length
    text_row = page.locator("#models tbody tr[data-model='text']").inner_text()
    assert re.search(r"\b[1-9]\d* / 0\b", text_row), text_row
    shot(page, "05-models")

    # Revoke through the UI, with a confirmation step.
    page.get_by_role("link", name="Keys").click()
    page.locator("#keys tbody tr", has_text="portal-test").get_by_role("link", name="Revoke portal-test").click()
    assert "cannot be undone" in page.locator(".warning").inner_text()
    shot(page, "06-revoke-confirm")
    page.get_by_role("button", name="Revoke key").click()
    page.wait_for_url(re.compile(r".*/developer/keys\?revoked="))
    assert "Revoked “portal-test”" in page.locator("#flash").inner_text()
    revoked_row = page.locator("#keys tbody tr", has_text="portal-test").inner_text()
    assert "revoked" in revoked_row
    # Spend against the budget, from the ledger.
    assert f"{'$%.6f' % expected} of $5.00" in revoked_row or f"{'$%.4f' % expected} of $5.00" in revoked_row
    shot(page, "07-revoked")
    with pytest.raises(openai.AuthenticationError):
        c.chat.completions.create(model="text", messages=[{"role": "user", "content": "hi"}])

    # Nothing the pages asked for left the gateway (no CDN, no fonts, no framework).
    assert requested and all(u.startswith(pgw.url) for u in requested), \
        [u for u in requested if not u.startswith(pgw.url)]

    # Sign out ends the session on the server, not only in the browser.
    cookie = {"jinf_session": session[0]["value"]}
    page.get_by_role("button", name="Sign out").click()
    assert "Signed out." in page.locator(".notice").inner_text()
    r = httpx.get(pgw.url + "/developer/keys", cookies=cookie, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/developer"
    context.close()


def test_a_key_minted_with_the_response_cache_shows_its_hits_and_savings(browser, pgw):
    context, page = sign_in(browser, pgw, pgw.key, viewport={"width": 1280, "height": 900})
    page.get_by_label("Name").fill("cached-key")
    page.get_by_label("Response cache").select_option("on")
    page.get_by_role("button", name="Mint key").click()
    new_key = page.locator("#new-key").input_value()
    pgw.minted.append(new_key)
    row = page.locator("#keys tbody tr", has_text="cached-key")
    key_id = row.get_attribute("data-key-id")
    assert "response cache on" in row.inner_text()

    c = openai.OpenAI(base_url=pgw.url + "/v1", api_key=new_key, max_retries=0)
    ask = {"model": "sim/length", "messages": [{"role": "user", "content": f"cache {key_id}"}]}
    first = c.chat.completions.with_raw_response.create(**ask)
    assert first.headers["x-jusinfer-cache"] == "miss"
    hit = wait_for(lambda: (r := c.chat.completions.with_raw_response.create(**ask))
                   .headers["x-jusinfer-cache"] == "hit" and r, "a cache hit")
    usage = hit.parse().usage
    saved = (usage.prompt_tokens * 2.5 + usage.completion_tokens * 10.0) / 1e6

    page.goto(pgw.url + f"/developer/usage?key={key_id}")
    def hits_shown():
        page.reload()
        return page.locator("#total-cache-hits").count() == 1

    wait_for(hits_shown, "the cache hits on the usage page")
    hits = int(page.locator("#total-cache-hits").inner_text())
    requests = int(page.locator("#total-requests").inner_text())
    assert hits >= 1 and requests > hits
    shown = float(page.locator("#total-saved").inner_text().lstrip("$"))
    assert shown == pytest.approx(saved * hits, rel=1e-2, abs=1e-6)
    shot(page, "08-usage-cache")
    context.close()


def test_normal_key_sees_only_its_own(browser, pgw):
    a = admin_mint(pgw, name="team-a", models=["text"])
    b = admin_mint(pgw, name="team-b")
    for k in (a, b):
        c = openai.OpenAI(base_url=pgw.url + "/v1", api_key=k["key"], max_retries=0)
        c.chat.completions.create(model="text", messages=[{"role": "user", "content": "hi"}])

    context, page = sign_in(browser, pgw, a["key"], viewport={"width": 1280, "height": 900})
    assert "admin" not in page.locator("#signed-in-as").inner_text()
    # Its own row only; no mint form, no revoke.
    rows = page.locator("#keys tbody tr")
    assert rows.count() == 1 and "team-a" in rows.inner_text()
    assert page.locator("#mint").count() == 0
    assert page.get_by_role("link", name=re.compile("^Revoke")).count() == 0

    page.get_by_role("link", name="Usage").click()
    page.wait_for_url(pgw.url + "/developer/usage")
    assert page.locator("#key-filter").count() == 0

    def own_row():
        page.reload()
        return page.locator("#recent tbody tr[data-request-id]").count() >= 1

    wait_for(own_row, "team-a's request in its usage")
    assert page.locator("#recent tbody tr[data-request-id]").count() == 1
    assert page.locator("#by-key").count() == 0
    shot(page, "08-usage-normal-key")

    # Another key's usage: refused, as a page and as CSV.
    r = page.goto(pgw.url + f"/developer/usage?key={b['id']}")
    assert r.status == 403
    assert "only its own usage" in page.content()
    assert page.request.get(pgw.url + f"/developer/usage.csv?key={b['id']}").status == 403
    own = page.request.get(pgw.url + "/developer/usage.csv?range=24h")
    rows = list(csv.DictReader(io.StringIO(own.text())))
    assert rows and {r["key_id"] for r in rows} == {a["id"]}

    # Its own session token cannot mint or revoke (the server checks, not only the page).
    page.goto(pgw.url + "/developer/keys")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    r = page.request.post(pgw.url + "/developer/keys", form={"csrf": csrf, "name": "sneaky"})
    assert r.status == 403 and "Only an admin key can mint" in r.text()
    r = page.request.post(pgw.url + f"/developer/keys/{b['id']}/revoke", form={"csrf": csrf})
    assert r.status == 403 and "Only an admin key can revoke" in r.text()
    listed = httpx.get(pgw.url + "/admin/keys", headers={"Authorization": f"Bearer {pgw.key}"}).json()["data"]
    assert not any(k["name"] == "sneaky" for k in listed)
    assert next(k for k in listed if k["id"] == b["id"])["status"] == "active"

    # Models: only those the key may call.
    page.goto(pgw.url + "/developer/models")
    assert {page.locator("#models tbody tr").nth(i).get_attribute("data-model")
            for i in range(page.locator("#models tbody tr").count())} == {"text"}
    assert page.locator("#open-providers").count() == 0
    context.close()


def session_client(gw):
    """Signs in over plain HTTP the way a browser does: the sign-in form's double-submit
    token, then the session cookie."""
    s = httpx.Client(base_url=gw.url, follow_redirects=False)
    page = s.get("/developer")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = s.post("/developer/login", data={"key": gw.key, "csrf": csrf})
    assert r.status_code == 303, r.text
    keys = s.get("/developer/keys")
    assert keys.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', keys.text).group(1)
    return s, csrf


def test_csrf_sessions_and_headers(pgw):
    s, csrf = session_client(pgw)
    before = len(httpx.get(pgw.url + "/admin/keys", headers={"Authorization": f"Bearer {pgw.key}"}).json()["data"])
    # No token, a wrong token, a cross-site origin: each refused, nothing minted.
    refused = s.post("/developer/keys", data={"name": "x"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert s.post("/developer/keys", data={"name": "x", "csrf": "A" * 40}).status_code == 403
    assert s.post("/developer/keys", data={"name": "x", "csrf": csrf},
                  headers={"Origin": "http://evil.example"}).status_code == 403
    assert s.post("/developer/keys", data={"name": "x", "csrf": csrf},
                  headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    after = len(httpx.get(pgw.url + "/admin/keys", headers={"Authorization": f"Bearer {pgw.key}"}).json()["data"])
    assert after == before
    # The same form with its token works, and a bad field is named.
    bad = s.post("/developer/keys", data={"name": "x", "csrf": csrf, "rpm": "many"})
    assert bad.status_code == 400 and "Requests per minute must be a number" in bad.text
    assert 'id="rpm" name="rpm" inputmode="numeric" value="many"' in bad.text
    keys_page = s.get("/developer/keys").text
    nonce = re.search(r'name="nonce" value="([^"]+)"', keys_page).group(1)
    ok = s.post("/developer/keys", data={"name": "<b>x</b>", "csrf": csrf, "nonce": nonce})
    assert ok.status_code == 201
    minted = re.search(r'id="new-key" type="text" readonly value="(jinf_[A-Za-z0-9]{40})"', ok.text).group(1)
    pgw.minted.append(minted)
    assert "<b>x</b>" not in ok.text and "&lt;b&gt;x&lt;/b&gt;" in ok.text  # escaped
    # The same form again (the browser reloading the page that showed the key, a double
    # click): refused, nothing minted, the page says why.
    count = len(httpx.get(pgw.url + "/admin/keys", headers={"Authorization": f"Bearer {pgw.key}"}).json()["data"])
    again = s.post("/developer/keys", data={"name": "<b>x</b>", "csrf": csrf, "nonce": nonce})
    assert again.status_code == 409 and "already sent" in again.text
    assert not re.search(r"jinf_[A-Za-z0-9]{40}", again.text)  # no key shown again
    assert len(httpx.get(pgw.url + "/admin/keys", headers={"Authorization": f"Bearer {pgw.key}"}).json()["data"]) == count
    # The page it answered with carries a fresh form that mints.
    fresh = re.search(r'name="nonce" value="([^"]+)"', again.text).group(1)
    assert fresh != nonce
    third = s.post("/developer/keys", data={"name": "y", "csrf": csrf, "nonce": fresh})
    assert third.status_code == 201
    pgw.minted.append(re.search(r'value="(jinf_[A-Za-z0-9]{40})"', third.text).group(1))

    # Pages are not cached, framed, or allowed foreign scripts.
    h = ok.headers
    assert h["cache-control"] == "no-store"
    assert "script-src 'self'" in h["content-security-policy"]
    assert "frame-ancestors 'none'" in h["content-security-policy"]
    assert h["x-frame-options"] == "DENY"
    assert h["content-type"].startswith("text/html")

    # Sign-in: a bad key, a form with no token.
    anon = httpx.Client(base_url=pgw.url, follow_redirects=False)
    form = anon.get("/developer")
    assert "HttpOnly" in form.headers["set-cookie"] and "SameSite=Strict" in form.headers["set-cookie"]
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    r = anon.post("/developer/login", data={"key": "jinf_" + "x" * 40, "csrf": token})
    assert r.status_code == 401 and "not valid" in r.text
    fresh = httpx.post(pgw.url + "/developer/login", data={"key": pgw.key, "csrf": token})
    assert fresh.status_code == 403  # no double-submit cookie
    assert "jinf_session" not in fresh.headers.get("set-cookie", "")

    # Not signed in: every page goes to sign-in; the CSV too.
    for path in ["/developer/keys", "/developer/usage", "/developer/models", "/developer/usage.csv"]:
        r = anon.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/developer", path

    # Signing in again in the same browser ends the session it had.
    old = s.cookies["jinf_session"]
    again = s.get("/developer")  # signed in: on to the keys page
    assert again.status_code == 303
    form = httpx.get(pgw.url + "/developer")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    r = httpx.post(pgw.url + "/developer/login", data={"key": pgw.key, "csrf": token},
                   cookies={"jinf_login": form.cookies["jinf_login"], "jinf_session": old})
    assert r.status_code == 303
    assert httpx.get(pgw.url + "/developer/keys", cookies={"jinf_session": old}).status_code == 303
    s, csrf = session_client(pgw)

    # Revoking the key a session signed in with ends the session.
    k = admin_mint(pgw, name="short-lived", admin=True)
    s2, csrf2 = session_client(type("G", (), {"url": pgw.url, "key": k["key"]}))
    assert s2.get("/developer/keys").status_code == 200
    r = s.post(f"/developer/keys/{k['id']}/revoke", data={"csrf": csrf})
    assert r.status_code == 303
    assert s2.get("/developer/keys").status_code == 303

    # Assets are embedded and cacheable.
    css = anon.get("/developer/static/portal.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "http" not in css.text
    assert anon.get("/developer/static/nope.js").status_code == 404


def test_phone_sized_screen(browser, pgw):
    context, page = sign_in(browser, pgw, pgw.key, viewport={"width": 390, "height": 844},
                            device_scale_factor=2, is_mobile=True, has_touch=True)
    no_horizontal_scroll(page)
    shot(page, "09-phone-keys")
    page.goto(pgw.url + "/developer/usage")
    no_horizontal_scroll(page)
    # The chart is drawn and fits the screen.
    box = page.locator("svg#chart-requests").bounding_box()
    assert box and 0 < box["width"] <= 390
    shot(page, "10-phone-usage")
    page.goto(pgw.url + "/developer/models")
    no_horizontal_scroll(page)
    context.close()


def test_sessions_hold_across_instances(sim, postgres, tmp_path):
    db = postgres.new_database()
    a = start_gateway(sim.url, tmp_path, database=postgres.url(db), name="pa")
    b = start_gateway(sim.url, tmp_path, database=postgres.url(db), admin_key=a.key, name="pb")
    try:
        s, csrf = session_client(a)
        # The same cookie on the other instance: signed in there too, and a form from A's
        # page is good on B.
        cookie = {"jinf_session": s.cookies["jinf_session"]}
        other = httpx.Client(base_url=b.url, cookies=cookie, follow_redirects=False)
        assert other.get("/developer/keys").status_code == 200
        r = other.post("/developer/keys", data={"name": "from-b", "csrf": csrf})
        assert r.status_code == 201
        # Usage on PostgreSQL: a request through A, seen on B's page (charts, breakdowns,
        # filters) and CSV.
        done = a.client().chat.completions.create(model="text", messages=[{"role": "user", "content": "hi"}])
        assert done.usage.total_tokens > 0

        def on_b():
            page = other.get("/developer/usage?range=7d&bucket=hour&model=text")
            assert page.status_code == 200, page.text
            return 'data-sum="1"' in page.text and page

        page = wait_for(on_b, "the request in B's usage page")
        assert page.text.count("data-request-id=") == 1
        assert other.get("/developer/usage?model=nothing-like-it").text.count("data-request-id=") == 0
        daily = other.get("/developer/usage?range=90d&bucket=hour")
        assert "shown by day" in daily.text and 'data-buckets="91"' in daily.text
        rows = list(csv.DictReader(io.StringIO(other.get("/developer/usage.csv?range=30d").text)))
        assert [r["model"] for r in rows] == ["text"]
        assert int(rows[0]["prompt_tokens"]) == done.usage.prompt_tokens
        # Signing out on A ends it on B.
        assert s.post("/developer/logout", data={"csrf": csrf}).status_code == 200
        assert other.get("/developer/keys").status_code == 303
    finally:
        a.proc.stop()
        b.proc.stop()


def test_without_keys_the_portal_says_why(sim, tmp_path):
    g = start_gateway(sim.url, tmp_path, name="noauth", top='auth = "none"', admin_key="")
    try:
        page = httpx.get(g.url + "/developer")
        assert page.status_code == 200
        assert 'auth = "keys"' in page.text.replace("&quot;", '"')
        assert 'name="key"' not in page.text  # no sign-in form to fill
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is None
        r = httpx.post(g.url + "/developer/login", data={"key": "jinf_" + "a" * 40, "csrf": "x"},
                       cookies={"jinf_login": "x"})
        assert r.status_code == 403 and "jinf_session" not in r.headers.get("set-cookie", "")
    finally:
        g.proc.stop()
