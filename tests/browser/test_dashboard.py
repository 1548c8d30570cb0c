"""The dashboard in a real browser: Playwright (pip) driving Debian's chromium by its path against
`python -m infra.local.run` over real sockets, with the quote refresh every 2 s and the replay moving one
trading day every 2 s, so prices really move.

One stack and one page for the module (each test continues where the previous one left off, in file
order: load, compare with the REST API, add a symbol, see a refresh, drop the WebSocket), plus a phone-width
page. Screenshots go to build/test-output/dashboard/ (gitignored)."""

from __future__ import annotations

import base64
import functools
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from boto3.dynamodb.conditions import Key
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Route,
    WebSocketRoute,
    sync_playwright,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from infra.local.token import issue_dev_token
from tests.conftest import REPO_ROOT
from tests.integration.conftest import LocalRun, local_run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = REPO_ROOT / "build" / "test-output" / "dashboard"
STACK_ENV = {
    "LOCAL_SCHEDULE": "refresh_quotes=2s",
    "REPLAY_STEP_SECONDS": "2",
    "CACHE_KEY_PREFIX": "dashboard-test:",
}
FIRST_PAINT_MS = 90_000  # a fresh stack's first page: cold Lambda workers and an empty cache
PANELS = ("indices", "sectors", "movers", "sentiment", "watchlist", "chart")


@dataclass
class Dashboard:
    run: LocalRun
    page: Page
    console_errors: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    remaining: list[int] = field(default_factory=list)  # X-RateLimit-Remaining of the page's REST calls
    csp: str = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.run.gateway_port}"

    def rest(self, path: str, **kwargs: Any) -> Any:
        """The REST API as another user sees it at this moment."""
        method = "POST" if "json" in kwargs else "GET"
        headers = {"Authorization": f"Bearer {issue_dev_token('browser-test-reader')}"}
        response = requests.request(method, f"{self.run.api}/{path}", headers=headers, timeout=30, **kwargs)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        return response.json()


def _launch(playwright: Playwright) -> Browser:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (or: apt-get install chromium)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)


def _watch(page: Page, errors: list[str], urls: list[str]) -> None:
    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    page.on("request", lambda request: urls.append(request.url))
    page.on("websocket", lambda ws: urls.append(ws.url))


def _wait_until_filled(page: Page, errors: list[str]) -> None:
    try:
        _wait_for_every_panel(page)
    except PlaywrightTimeoutError:
        page.screenshot(path=str(OUTPUT / "not-filled.png"), full_page=True)
        status = page.inner_text('[data-testid="connection-status"]')
        pytest.fail(
            f"panels not filled in {FIRST_PAINT_MS} ms (status {status!r}, errors {errors}); see not-filled.png"
        )


def _wait_for_every_panel(page: Page) -> None:
    page.wait_for_function(
        """() => {
          const q = (s) => document.querySelectorAll(s).length;
          const status = document.querySelector('[data-testid="connection-status"]').textContent;
          const prices = [...document.querySelectorAll('[data-testid="watchlist"] tbody [data-field="price"]')];
          return status === "live"
            && q('[data-testid="indices"] tbody tr') === 5
            && q('[data-testid="sectors"] .tile') === 11
            && q('[data-testid="movers"] [data-list] tbody tr') === 15
            && q('[data-testid="sentiment"] [data-field="score"]') === 1
            && prices.length > 0 && prices.every((cell) => cell.dataset.value !== "")
            && q('[data-testid="chart"] svg.price-chart') === 1;
        }""",
        timeout=FIRST_PAINT_MS,
    )


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def dashboard(redis_url: str, tmp_path_factory: pytest.TempPathFactory, playwright: Playwright) -> Iterator[Dashboard]:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    browser = _launch(playwright)
    try:
        with local_run(redis_url, tmp_path_factory.mktemp("dashboard"), env=STACK_ENV) as run:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            board = Dashboard(run, page)
            _watch(page, board.console_errors, board.urls)
            page.on("response", lambda r: _note_budget(board, r.headers.get("x-ratelimit-remaining")))
            response = page.goto(f"{board.base}/")
            assert response is not None
            assert response.status == 200
            board.csp = response.headers.get("content-security-policy", "")
            _wait_until_filled(page, board.console_errors)
            yield board
            context.close()
    finally:
        browser.close()


def _note_budget(board: Dashboard, remaining: str | None) -> None:
    if remaining is not None and remaining.isdigit():
        board.remaining.append(int(remaining))


def _overflowing_panels(page: Page) -> list[str]:
    """Panels whose content is wider than the panel (clipped or scrolling sideways)."""
    result: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('[data-testid]')]
             .filter((panel) => panel.scrollWidth > panel.clientWidth + 1)
             .map((panel) => panel.dataset.testid)"""
    )
    return result


def _values(page: Page, selector: str) -> dict[str, dict[str, str]]:
    """data-field → data-value of each row matching selector, by its data-symbol."""
    result: dict[str, dict[str, str]] = page.evaluate(
        """(selector) => Object.fromEntries([...document.querySelectorAll(selector)].map((row) => [
             row.dataset.symbol,
             Object.fromEntries([...row.querySelectorAll('[data-field]')]
               .map((c) => [c.dataset.field, c.dataset.value])),
           ]))""",
        selector,
    )
    return result


def _wait_for_status(page: Page, status: str, timeout_ms: int = 15_000) -> None:
    page.wait_for_function(
        "(status) => document.querySelector('[data-testid=connection-status]').textContent === status",
        arg=status,
        timeout=timeout_ms,
    )


def _wait_for_a_new_price(page: Page, symbol: str) -> str:
    """Wait until the watchlist's price of symbol changes on screen (a streamed update); its cell selector."""
    cell = f'[data-testid="watchlist"] tr[data-symbol="{symbol}"] [data-field="price"]'
    before = page.get_attribute(cell, "data-value")
    page.wait_for_function(
        "([selector, before]) => document.querySelector(selector).dataset.value !== before",
        arg=[cell, before],
        timeout=20_000,
    )
    return cell


def _watchlist_matches_rest(board: Dashboard, attempts: int = 8) -> None:
    """Prices move every 2 s, so the page is read before and after the REST call: each REST price must be
    one the page showed around that moment. Repeated a few times (a refresh can land between the reads)."""
    last: list[str] = []
    for _ in range(attempts):
        before = _values(board.page, '[data-testid="watchlist"] tbody tr')
        symbols = list(before)
        answer = board.rest(f"quotes?symbols={','.join(symbols)}")
        after = _values(board.page, '[data-testid="watchlist"] tbody tr')
        last = []
        for item in answer["quotes"]:
            quote = item["quote"]
            assert quote is not None, item
            seen = {float(before[item["symbol"]]["price"]), float(after[item["symbol"]]["price"])}
            if quote["price"] not in seen:
                last.append(f"{item['symbol']}: REST {quote['price']}, page {sorted(seen)}")
        if not last:
            return
        time.sleep(0.7)
    pytest.fail(f"the watchlist never matched GET /quotes: {last}")


def test_the_page_loads_every_panel_without_console_errors_or_a_token_in_any_url(dashboard: Dashboard) -> None:
    page = dashboard.page
    for panel in PANELS:
        assert page.locator(f'[data-testid="{panel}"]').is_visible()
        if panel != "watchlist":
            assert page.locator(f'[data-testid="{panel}"] .badge').first.inner_text() == "replay"
    assert page.inner_text('[data-testid="connection-status"]') == "live"
    # The watchlist of a first visit: the popular symbols (the replay universe's list).
    rows = page.locator('[data-testid="watchlist"] tbody tr')
    assert rows.count() == 12
    assert rows.first.get_attribute("data-symbol") == "AAPL"
    page.screenshot(path=str(OUTPUT / "dashboard-1280x800.png"))
    assert _overflowing_panels(page) == []
    assert dashboard.console_errors == []
    # The CSP allows its own origin and the WebSocket API only.
    assert "default-src 'none'" in dashboard.csp
    assert f"connect-src 'self' ws://127.0.0.1:{dashboard.run.gateway_port}" in dashboard.csp
    # The token went in headers and the WebSocket subprotocol, never in a URL.
    token = page.evaluate("() => sessionStorage.getItem('market-dashboard.token')")
    assert token.count(".") == 2
    assert dashboard.urls
    assert not [url for url in dashboard.urls if token in url or "token=" in url]
    assert "token" not in page.url
    # The first paint's REST calls fit the per-user budget (USER_RATE_LIMIT_PER_MINUTE, 600 units: 1 per
    # request + 20 per provider call it caused) with room to spare, on a cold cache.
    limit = 600
    used = limit - min(dashboard.remaining)
    print(f"first paint: {len(dashboard.remaining)} budgeted REST calls, {used} of {limit} units used")
    assert used <= limit // 2, used


def _indices_match(board: Dashboard) -> None:
    page = board.page
    indices = board.rest("indices")
    shown = _values(page, '[data-testid="indices"] tbody tr')
    assert set(shown) == {q["symbol"] for q in indices["indices"]}
    for quote in indices["indices"]:
        assert float(shown[quote["symbol"]]["price"]) == quote["price"]
        assert float(shown[quote["symbol"]]["changePercent"]) == quote["changePercent"]
    # The text is the same value, formatted (tabular figures, a sign, an arrow for the direction).
    first = indices["indices"][0]
    price_text = page.inner_text(f'[data-testid="indices"] tr[data-symbol="{first["symbol"]}"] [data-field="price"]')
    assert price_text == f"{first['price']:,.2f}"


def _sectors_match(board: Dashboard) -> None:
    sectors = board.rest("sectors")
    tiles = board.page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('[data-testid="sectors"] .tile')]
             .map((t) => [t.dataset.etf, t.querySelector('[data-field="changePercent"]').dataset.value]))"""
    )
    assert set(tiles) == {s["etf"] for s in sectors["sectors"]}
    for sector in sectors["sectors"]:
        expected = "" if sector["changePercent"] is None else sector["changePercent"]
        assert (float(tiles[sector["etf"]]) if tiles[sector["etf"]] else "") == expected


def _movers_match(board: Dashboard) -> None:
    for kind in ("gainers", "losers", "actives"):
        movers = board.rest(f"movers?type={kind}&limit=5")["movers"]
        rows = board.page.evaluate(
            """(kind) => [...document.querySelectorAll(`[data-testid="movers"] [data-list="${kind}"] tbody tr`)]
                 .map((r) => [r.dataset.symbol, Number(r.querySelector('[data-field="price"]').dataset.value)])""",
            kind,
        )
        assert rows == [[m["symbol"], m["price"]] for m in movers], kind


def _sentiment_matches(board: Dashboard) -> None:
    page = board.page
    sentiment = board.rest("sentiment")
    score = page.get_attribute('[data-testid="sentiment"] [data-field="score"]', "data-value")
    assert float(score or "nan") == sentiment["score"]
    assert page.text_content('[data-testid="sentiment"] [data-field="label"]') == sentiment["label"]
    assert page.locator('[data-testid="sentiment"] tr[data-component]').count() == len(sentiment["components"])


def _chart_matches(board: Dashboard) -> None:
    chart = board.page.locator('[data-testid="chart"]')
    symbol = chart.get_attribute("data-symbol")
    history = board.rest(f"historical/{symbol}?period=6mo&interval=1d")
    assert chart.get_attribute("data-bars") == str(len(history["bars"]))
    assert float(chart.get_attribute("data-last-close") or "nan") == history["bars"][-1]["close"]


def _eventually(page: Page, check: Callable[[], None], seconds: float = 10.0) -> None:
    """The same values, allowing for a refresh job landing between the REST read and the page read: the
    job writes the cache and publishes the new values, so both sides agree again within moments."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            page.wait_for_timeout(1000)


def test_each_panel_shows_what_the_rest_api_answers(dashboard: Dashboard) -> None:
    for check in (_indices_match, _sectors_match, _movers_match, _sentiment_matches, _chart_matches):
        _eventually(dashboard.page, functools.partial(check, dashboard))
    _watchlist_matches_rest(dashboard)
    # Provenance: as_of on hover (the badge's title), and stale marked when it is (nothing is stale here).
    title = dashboard.page.get_attribute('[data-testid="indices"] .provenance', "title") or ""
    assert title.startswith("as of 20")
    assert dashboard.page.locator('[data-stale="true"]').count() == 0


def test_adding_a_symbol_from_the_search_suggestions_shows_its_price(dashboard: Dashboard) -> None:
    page = dashboard.page
    page.fill("#symbol-input", "adobe")
    suggestion = page.locator('[data-action="suggestion"][data-symbol="ADBE"]')
    suggestion.wait_for(timeout=15_000)
    suggestion.click()
    price = page.locator('[data-testid="watchlist"] tr[data-symbol="ADBE"] [data-field="price"]')
    price.wait_for(timeout=15_000)
    page.wait_for_function(
        """() => {
          const cell = document.querySelector('[data-testid="watchlist"] tr[data-symbol="ADBE"] [data-field="price"]');
          return cell && cell.dataset.value !== "";
        }""",
        timeout=15_000,
    )
    quote = dashboard.rest("quote/ADBE")
    assert quote["source"] == "replay"
    assert quote["price"] > 0
    # Kept in localStorage for the next visit.
    saved = json.loads(page.evaluate("() => localStorage.getItem('market-dashboard.watchlist')"))
    assert saved[-1] == "ADBE"
    _watchlist_matches_rest(dashboard)
    # By keyboard alone: type, ArrowDown into the suggestions, Enter on one.
    page.focus("#symbol-input")
    page.keyboard.type("micro")
    page.locator('[data-action="suggestion"][data-symbol="MU"]').wait_for(timeout=15_000)
    page.keyboard.press("ArrowDown")
    focused = page.evaluate("() => document.activeElement.dataset.symbol")
    page.keyboard.press("Enter")
    page.locator(f'[data-testid="watchlist"] tr[data-symbol="{focused}"]').wait_for(timeout=15_000)
    # Removing takes the row away and out of the stored list.
    page.click(f'[data-action="remove"][data-symbol="{focused}"]')
    assert page.locator(f'[data-testid="watchlist"] tr[data-symbol="{focused}"]').count() == 0
    saved = json.loads(page.evaluate("() => localStorage.getItem('market-dashboard.watchlist')"))
    assert focused not in saved
    assert "ADBE" in saved


def test_the_chart_follows_the_period_selector_and_draws_candlesticks(dashboard: Dashboard) -> None:
    page = dashboard.page
    chart = page.locator('[data-testid="chart"]')
    page.click('[data-testid="watchlist"] [data-action="chart"][data-symbol="MSFT"]')
    page.wait_for_function("() => document.querySelector('[data-testid=\"chart\"]').dataset.symbol === 'MSFT'")
    page.click('[data-period="1y"]')
    assert page.get_attribute('[data-period="1y"]', "aria-pressed") == "true"
    history = dashboard.rest("historical/MSFT?period=1y&interval=1d")
    page.wait_for_function(
        "(count) => document.querySelector('[data-testid=\"chart\"]').dataset.bars === String(count)",
        arg=len(history["bars"]),
        timeout=15_000,
    )
    page.click('[data-kind="candles"]')
    assert page.locator('[data-testid="chart"] .candle').count() == len(history["bars"])
    # Up candles hollow, down candles filled: told apart without colour.
    assert page.locator('[data-testid="chart"] .candle.up').count() > 0
    assert page.locator('[data-testid="chart"] .candle.down').count() > 0
    chart.screenshot(path=str(OUTPUT / "chart-candles-1y.png"))
    page.click('[data-kind="line"]')
    assert page.locator('[data-testid="chart"] polyline.line').count() == 1


def test_a_refresh_changes_a_watched_price_on_screen_without_a_reload(dashboard: Dashboard) -> None:
    page = dashboard.page
    page.evaluate("() => { window.__sameDocument = true; }")
    cell = _wait_for_a_new_price(page, "AAPL")
    assert page.evaluate("() => window.__sameDocument") is True
    # The change flashed, with its direction shown by more than colour (data-moved drives an arrow).
    assert page.get_attribute(cell, "data-moved") in ("up", "down")
    assert dashboard.console_errors == []


@contextmanager
def _another_page(
    dashboard: Dashboard, *, fake_clock: bool = False
) -> Iterator[tuple[BrowserContext, Dashboard, list[str]]]:
    """A second page in a browser context of its own (1280x800), loaded and filled, its console errors
    collected; ``fake_clock``: Playwright's fake timers installed before the page loads."""
    browser = dashboard.page.context.browser
    assert browser is not None
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        errors: list[str] = []
        _watch(page, errors, [])
        if fake_clock:
            page.clock.install()
        page.goto(f"{dashboard.base}/")
        _wait_until_filled(page, errors)
        yield context, Dashboard(dashboard.run, page), errors
    finally:
        context.close()


def _record_statuses(page: Page) -> None:
    """Every text the connection indicator shows from now on, in order, in ``window.__statuses``."""
    page.evaluate(
        """() => {
          window.__statuses = [];
          const node = document.querySelector('[data-testid="connection-status"]');
          new MutationObserver(() => window.__statuses.push(node.textContent))
            .observe(node, { childList: true, characterData: true, subtree: true });
        }"""
    )


def _page_connections(board: Dashboard) -> list[str]:
    """The page's WebSocket connections: its user is the token's subject, its connections the by-user index."""
    token = board.page.evaluate("() => sessionStorage.getItem('market-dashboard.token')")
    payload = token.split(".")[1]
    subject = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    table = boto3.resource(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{board.run.moto_port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).Table("market-data-local-connections")
    items = table.query(IndexName="by-user", KeyConditionExpression=Key("user_id").eq(subject))["Items"]
    return [str(item["connection_id"]) for item in items]


def _drop_connections(board: Dashboard) -> list[str]:
    """Close the page's WebSocket connections from the server side, as API Gateway does (DeleteConnection
    on the management API)."""
    ids = _page_connections(board)
    for connection_id in ids:
        response = requests.delete(f"{board.base}/@connections/{connection_id}", timeout=10)
        assert response.status_code in (204, 410), response.text
    return ids


def _wait(page: Page, condition: Callable[[], bool], timeout: float, message: str) -> None:
    """Poll with the page's own wait: Playwright's sync API delivers events (and runs WebSocket routes)
    only while one of its calls is running, never during time.sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(message)
        page.wait_for_timeout(200)


def test_dropping_the_websocket_shows_reconnecting_then_live_with_the_watchlist_current(dashboard: Dashboard) -> None:
    page = dashboard.page
    _record_statuses(page)
    dropped = _drop_connections(dashboard)
    assert dropped, "the page holds a WebSocket connection"
    page.wait_for_function(
        "() => window.__statuses.includes('reconnecting') && "
        "window.__statuses.lastIndexOf('live') > window.__statuses.indexOf('reconnecting')",
        timeout=30_000,
    )
    statuses = page.evaluate("() => window.__statuses")
    assert statuses[0] == "reconnecting", statuses
    assert statuses[-1] == "live", statuses
    _wait(
        page,
        lambda: bool(set(_page_connections(dashboard)) - set(dropped)),
        10,
        "no new connection after the reconnect",
    )
    # Resubscribed: prices keep moving on the new connection and match the REST API again.
    _wait_for_a_new_price(page, "ADBE")
    _watchlist_matches_rest(dashboard)
    assert dashboard.console_errors == []


def test_the_phone_width_layout_has_every_panel_and_no_sideways_scroll(dashboard: Dashboard) -> None:
    browser = dashboard.page.context.browser
    assert browser is not None
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        errors: list[str] = []
        _watch(page, errors, [])
        page.goto(f"{dashboard.base}/")
        _wait_until_filled(page, errors)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        assert _overflowing_panels(page) == []
        for panel in PANELS:
            box = page.locator(f'[data-testid="{panel}"]').bounding_box()
            assert box is not None
            assert box["x"] >= 0, (panel, box)
            assert box["x"] + box["width"] <= 390, (panel, box)
        page.screenshot(path=str(OUTPUT / "dashboard-390-wide.png"), full_page=True)
        assert errors == []
    finally:
        context.close()


def test_a_seq_gap_makes_the_page_send_resync_and_carry_on(dashboard: Dashboard) -> None:
    """Between the page and the real server (Playwright's WebSocket routing), one data frame's `seq` is
    raised by one: a number goes missing. The page must send `resync` after its 1 s grace, and the
    snapshot that answers must bring it back to live prices."""
    browser = dashboard.page.context.browser
    assert browser is not None
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    sent: list[dict[str, Any]] = []
    holes: list[int] = []

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            sent.append(json.loads(message))
            server.send(message)

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            updates = frame.get("data", {}).get("updates", []) if frame.get("type") == "batch" else []
            for update in updates:
                # The stream's `stale` reaches the page: sentiment is marked as if every source had failed.
                if update["type"] == "sentiment_update":
                    update["data"]["stale"] = True
                    message = json.dumps(frame)
            if not holes and updates and not any(u["data"]["snapshot"] for u in updates):
                holes.append(frame["seq"])
                frame["seq"] += 1
                message = json.dumps(frame)
            ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)

    try:
        page = context.new_page()
        errors: list[str] = []
        _watch(page, errors, [])
        page.route_web_socket(re.compile(r".*/ws/market-data.*"), route)
        page.goto(f"{dashboard.base}/")
        _wait_until_filled(page, errors)
        _wait(page, lambda: bool(holes), 20, "no scheduler-made frame reached the page")
        _wait(page, lambda: any(m.get("type") == "resync" for m in sent), 10, f"no resync after the hole; sent {sent}")
        resyncs = [m for m in sent if m.get("type") == "resync"]
        assert len(resyncs) == 1, sent
        assert page.evaluate("() => document.body.dataset.resyncs") == "1"
        _wait_for_a_new_price(page, "AAPL")
        assert page.inner_text('[data-testid="connection-status"]') == "live"
        stale = page.locator('[data-testid="sentiment"] .badge.stale')
        assert stale.inner_text().endswith("stale")
        assert page.get_attribute('[data-testid="sentiment"]', "data-stale") == "true"
        assert page.locator('[data-testid="indices"] .badge.stale').count() == 0
        page.screenshot(path=str(OUTPUT / "dashboard-stale-sentiment.png"))
        assert errors == []
    finally:
        context.close()


def test_a_deployed_stage_asks_for_a_token_and_offers_the_login_url(dashboard: Dashboard) -> None:
    """The page as a deployed stage serves it: its configuration (here rewritten in the browser, since the
    local stack is the local stage) names no dev-token route and a login URL, so the page asks for a token;
    a pasted one is used from memory and sessionStorage, never from a URL."""
    browser = dashboard.page.context.browser
    assert browser is not None
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        errors: list[str] = []
        urls: list[str] = []
        _watch(page, errors, urls)

        def deployed_config(route: Route) -> None:
            config = route.fetch().json()
            route.fulfill(json={**config, "stage": "dev", "login_url": "https://login.example.com/authorize"})

        page.route("**/api/v1/config", deployed_config)
        page.goto(f"{dashboard.base}/")
        page.locator("#auth").wait_for(state="visible", timeout=15_000)
        assert page.get_attribute("#login-link", "href") == "https://login.example.com/authorize"
        assert not [url for url in urls if "dev-token" in url]
        token = issue_dev_token("browser-test-pasted")
        page.fill("#token-input", token)
        page.click('#auth button[type="submit"]')
        _wait_until_filled(page, errors)
        assert page.locator("#auth").is_hidden()
        assert page.input_value("#token-input") == ""
        assert page.evaluate("() => sessionStorage.getItem('market-dashboard.token')") == token
        assert not [url for url in urls if token in url]
        assert errors == []
    finally:
        context.close()


def test_the_page_moves_to_a_new_connection_before_the_two_hour_limit_without_showing_it(
    dashboard: Dashboard,
) -> None:
    """With the page's clock jumped forward two hours (Playwright's fake timers), the page opens its next
    connection before API Gateway's 2-hour maximum, closes the old one once the new one has its snapshot,
    and the status never leaves `live`."""
    with _another_page(dashboard, fake_clock=True) as (_, board, errors):
        page = board.page
        first = _page_connections(board)
        assert len(first) == 1
        _record_statuses(page)
        page.clock.fast_forward("01:59:00")
        _wait(page, lambda: (ids := _page_connections(board)) != first and len(ids) == 1, 20, "no rotation")
        assert page.inner_text('[data-testid="connection-status"]') == "live"
        assert "reconnecting" not in page.evaluate("() => window.__statuses")
        _wait_for_a_new_price(page, "AAPL")
        assert errors == []


def test_offline_shows_offline_and_coming_back_online_goes_live_at_once(dashboard: Dashboard) -> None:
    """The browser loses its network (Playwright's offline emulation): the page says `offline` at once,
    whatever its socket looks like; back online it moves to a fresh connection (the old one may be dead
    without knowing it) and is `live` again within seconds, prices moving."""
    with _another_page(dashboard) as (context, board, errors):
        page = board.page
        before = _page_connections(board)
        context.set_offline(True)
        _wait_for_status(page, "offline", timeout_ms=5_000)
        page.wait_for_timeout(1000)
        context.set_offline(False)
        started = time.monotonic()
        _wait_for_status(page, "live")
        assert time.monotonic() - started < 10
        _wait(page, lambda: (ids := _page_connections(board)) != before and len(ids) == 1, 10, "no fresh connection")
        _wait_for_a_new_price(page, "AAPL")
        assert errors == []
