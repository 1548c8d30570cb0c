// The dashboard: REST for the first paint and the chart, the WebSocket (batch format) for everything
// that moves. Each panel keeps its latest payload and re-renders from it; no framework, no build step.
import { Api, ApiError, AuthRequired, TokenStore, loadConfig } from "./api.js";
import { gauge, priceChart } from "./charts.js";
import { MarketStream } from "./stream.js";

const WATCHLIST_KEY = "market-dashboard.watchlist";
const SELECTED_KEY = "market-dashboard.selected";
const MAX_WATCHLIST = 40; // the connection's 50 subscriptions, less the 4 channels, with room to spare
const MOVERS_SHOWN = 5;
const PERIODS = [
  ["1mo", "1d"],
  ["3mo", "1d"],
  ["6mo", "1d"],
  ["1y", "1d"],
  ["5y", "1wk"],
];

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// --- formatting: tabular figures, signs and arrows (up and down readable without colour) ---------

const money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

function direction(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "flat";
  if (value > 0) return "up";
  if (value < 0) return "down";
  return "flat";
}

const ARROWS = { up: "▲", down: "▼", flat: "■" };

function signed(value, suffix = "") {
  if (value === null || value === undefined) return "n/a";
  const sign = value > 0 ? "+" : value < 0 ? "−" : "";
  return `${sign}${money.format(Math.abs(value))}${suffix}`;
}

function numberCell(field, value, text, extraClass = "") {
  return el("td", {
    class: `num ${extraClass}`.trim(),
    "data-field": field,
    "data-value": value === null || value === undefined ? "" : String(value),
    text,
  });
}

function changeCell(field, value, suffix = "", extraClass = "") {
  const dir = direction(value);
  const cell = numberCell(field, value, "", `chg ${dir} ${extraClass}`);
  cell.append(el("span", { class: "arrow", "aria-hidden": "true", text: ARROWS[dir] }), ` ${signed(value, suffix)}`);
  const word = { up: "up", down: "down", flat: "unchanged" }[dir];
  cell.setAttribute("aria-label", `${word} ${signed(value, suffix)}`);
  return cell;
}

// A table with a header row: columns are [label, class] (the first is the row header, left-aligned).
function dataTable(cls, columns, rows) {
  const head = columns.map(([label, columnClass], i) =>
    el("th", { scope: "col", class: i === 0 ? columnClass : `num ${columnClass || ""}`.trim(), text: label }),
  );
  return el("table", { class: cls }, [el("thead", {}, [el("tr", {}, head)]), el("tbody", {}, rows)]);
}

// --- provenance: a source badge, as_of on hover, stale marked -------------------------------------

function asOfText(meta) {
  const parts = [];
  if (meta.as_of) parts.push(`as of ${new Date(meta.as_of).toISOString().replace(".000Z", "Z")}`);
  if (meta.replay_day) parts.push(`replay day ${meta.replay_day}`);
  if (meta.stale) parts.push("stale: every source failed, cached copy shown");
  return parts.join(" · ");
}

function provenance(meta) {
  const wrap = el("span", { class: "provenance", "data-source": meta.source || "", title: asOfText(meta) });
  wrap.append(el("span", { class: `badge ${meta.source === "replay" ? "replay" : "vendor"}`, text: meta.source || "?" }));
  if (meta.stale) wrap.append(el("span", { class: "badge stale", "data-stale": "true", text: "stale" }));
  wrap.tabIndex = 0; // reachable by keyboard, so the as_of tooltip is too
  return wrap;
}

function setPanelMeta(panel, meta) {
  const slot = $(".meta", panel);
  slot.replaceChildren(provenance(meta));
  panel.dataset.stale = meta.stale ? "true" : "false";
}

// Stream updates carry `timestamp`, `source`, `stale`; REST payloads `as_of`, `source`, `stale`, `replay_day`.
function metaOf(data) {
  return {
    source: data.source,
    as_of: data.as_of || data.timestamp,
    stale: Boolean(data.stale),
    replay_day: data.replay_day || null,
  };
}

// --- panels ----------------------------------------------------------------------------------------

const panels = {
  indices: () => $('[data-testid="indices"]'),
  sectors: () => $('[data-testid="sectors"]'),
  movers: () => $('[data-testid="movers"]'),
  sentiment: () => $('[data-testid="sentiment"]'),
  watchlist: () => $('[data-testid="watchlist"]'),
  chart: () => $('[data-testid="chart"]'),
};

function renderIndices(data) {
  const panel = panels.indices();
  setPanelMeta(panel, metaOf(data));
  const rows = (data.indices || []).map((q) =>
    el("tr", { "data-symbol": q.symbol, title: asOfText(metaOf({ ...data, as_of: q.as_of || data.as_of })) }, [
      el("th", { scope: "row" }, [el("span", { class: "name", text: q.indexName || q.name || q.symbol })]),
      numberCell("price", q.price, money.format(q.price)),
      changeCell("change", q.change, "", "hide-narrow"),
      changeCell("changePercent", q.changePercent, "%"),
    ]),
  );
  const table = dataTable("quotes", [["Index"], ["Last"], ["Change", "hide-narrow"], ["%"]], rows);
  const missing = (data.unavailable || []).length
    ? el("p", { class: "note", text: `unavailable: ${data.unavailable.join(", ")}` })
    : null;
  $(".body", panel).replaceChildren(table, ...(missing ? [missing] : []));
}

function heatLevel(pct) {
  const magnitude = Math.min(4, Math.ceil(Math.abs(pct) / 0.5)); // 0.5 % steps, 4 levels
  return `${direction(pct)}-${magnitude}`;
}

function renderSectors(data) {
  const panel = panels.sectors();
  setPanelMeta(panel, metaOf(data));
  const tiles = (data.sectors || []).map((s) => {
    const pct = s.changePercent;
    const known = pct !== null && pct !== undefined;
    const dir = known ? direction(pct) : "flat";
    const tile = el("li", {
      class: `tile ${known ? `heat-${heatLevel(pct)}` : "heat-none"}`,
      "data-etf": s.etf,
      title: known ? `${s.sector} (${s.etf}) ${money.format(s.price)} · ${asOfText(metaOf({ ...data, as_of: s.as_of || data.as_of }))}` : `${s.sector} (${s.etf}): no data`,
      tabIndex: 0,
    });
    tile.append(
      el("span", { class: "sector-name", text: s.sector }),
      el("span", { class: "etf", text: s.etf }),
      el("span", {
        class: `num pct ${dir}`,
        "data-field": "changePercent",
        "data-value": known ? String(pct) : "",
        text: known ? `${ARROWS[dir]} ${signed(pct, "%")}` : "n/a",
      }),
    );
    return tile;
  });
  const summary = el("p", { class: "note", text: `${data.advancers} advancing · ${data.decliners} declining` });
  $(".body", panel).replaceChildren(el("ul", { class: "heatmap" }, tiles), summary);
}

function moverTable(kind, title, quotes) {
  const rows = quotes.slice(0, MOVERS_SHOWN).map((q) =>
    el("tr", { "data-symbol": q.symbol }, [
      el("th", { scope: "row" }, [
        el("button", { type: "button", class: "link", "data-action": "chart", "data-symbol": q.symbol, text: q.symbol }),
      ]),
      numberCell("price", q.price, money.format(q.price)),
      kind === "actives"
        ? numberCell("volume", q.volume, q.volume === null ? "n/a" : compact.format(q.volume))
        : changeCell("changePercent", q.changePercent, "%"),
    ]),
  );
  return el("div", { class: "mover-list", "data-list": kind }, [
    el("h3", { text: title }),
    dataTable("quotes compact", [["Symbol"], ["Last"], [kind === "actives" ? "Volume" : "%"]], rows),
  ]);
}

function renderMovers(data) {
  const panel = panels.movers();
  setPanelMeta(panel, metaOf(data));
  $(".body", panel).replaceChildren(
    moverTable("gainers", "Gainers", data.gainers || []),
    moverTable("losers", "Losers", data.losers || []),
    moverTable("actives", "Most active", data.actives || []),
  );
}

const COMPONENT_NAMES = { vix: "VIX level", sp500_momentum: "S&P 500 momentum", sector_breadth: "Sector breadth" };

function renderSentiment(data) {
  const panel = panels.sentiment();
  setPanelMeta(panel, metaOf(data));
  const score = el("p", { class: "score" }, [
    el("span", { class: "num", "data-field": "score", "data-value": String(data.score), text: money.format(data.score) }),
    " ",
    el("span", { class: "label", "data-field": "label", text: data.label }),
  ]);
  const rows = (data.components || []).map((c) =>
    el("tr", { "data-component": c.name }, [
      el("th", { scope: "row", text: COMPONENT_NAMES[c.name] || c.name }),
      numberCell("value", c.value, c.value === null ? "n/a" : money.format(c.value)),
      changeCell("component-score", c.score),
      numberCell("weight", c.weight, money.format(c.weight)),
    ]),
  );
  const table = dataTable("quotes compact", [["Component"], ["Input"], ["Score"], ["Weight"]], rows);
  $(".body", panel).replaceChildren(
    gauge(data.score, { label: `sentiment ${money.format(data.score)} of 100, ${data.label}` }),
    score,
    table,
  );
}

// --- watchlist -------------------------------------------------------------------------------------

const state = {
  api: null,
  stream: null,
  watchlist: [],
  quotes: new Map(), // symbol -> {price, change, changePercent, volume, meta}
  selected: null,
  period: "6mo",
  chartKind: "line",
  chartData: null,
};

function loadWatchlist(popular) {
  try {
    const saved = JSON.parse(localStorage.getItem(WATCHLIST_KEY) || "null");
    if (Array.isArray(saved) && saved.every((s) => typeof s === "string")) return saved.slice(0, MAX_WATCHLIST);
  } catch {
    // a damaged entry: start from the popular list
  }
  return popular.slice(0, MAX_WATCHLIST);
}

function saveWatchlist() {
  localStorage.setItem(WATCHLIST_KEY, JSON.stringify(state.watchlist));
}

function watchRow(symbol) {
  const row = el("tr", { "data-symbol": symbol }, [
    el("th", { scope: "row" }, [
      el("button", {
        type: "button",
        class: "link",
        "data-action": "chart",
        "data-symbol": symbol,
        text: symbol,
        "aria-label": `show ${symbol} chart`,
      }),
    ]),
    numberCell("price", null, "…"),
    numberCell("change", null, "", "hide-narrow"),
    numberCell("changePercent", null, ""),
    el("td", { class: "meta-cell" }),
    el("td", {}, [
      el("button", {
        type: "button",
        class: "remove",
        "data-action": "remove",
        "data-symbol": symbol,
        "aria-label": `remove ${symbol}`,
        text: "×",
      }),
    ]),
  ]);
  return row;
}

function renderWatchlistRows() {
  const body = $("tbody", panels.watchlist());
  body.replaceChildren(...state.watchlist.map(watchRow));
  for (const symbol of state.watchlist) if (state.quotes.has(symbol)) paintQuote(symbol, false);
  $(".empty", panels.watchlist()).hidden = state.watchlist.length > 0;
}

function flash(cell, dir) {
  cell.classList.remove("flash-up", "flash-down", "flash-flat");
  void cell.offsetWidth; // restart the animation
  cell.classList.add(`flash-${dir}`);
}

function paintQuote(symbol, animate) {
  const row = $(`tr[data-symbol="${CSS.escape(symbol)}"]`, panels.watchlist());
  const q = state.quotes.get(symbol);
  if (!row || !q) return;
  const priceCell = $('[data-field="price"]', row);
  const previous = priceCell.dataset.value === "" ? null : Number(priceCell.dataset.value);
  priceCell.replaceWith(numberCell("price", q.price, money.format(q.price)));
  $('[data-field="change"]', row).replaceWith(changeCell("change", q.change, "", "hide-narrow"));
  $('[data-field="changePercent"]', row).replaceWith(changeCell("changePercent", q.changePercent, "%"));
  $(".meta-cell", row).replaceChildren(provenance(q.meta));
  row.title = asOfText(q.meta);
  row.dataset.stale = q.meta.stale ? "true" : "false";
  delete row.dataset.unavailable;
  if (animate && previous !== null && previous !== q.price) {
    const cell = $('[data-field="price"]', row);
    flash(cell, q.price > previous ? "up" : "down");
    cell.dataset.moved = q.price > previous ? "up" : "down";
  }
}

// A stored symbol no source can quote (unknown here, or not listed on the replay day): said, not hidden.
function markUnavailable(symbol, message) {
  const row = $(`tr[data-symbol="${CSS.escape(symbol)}"]`, panels.watchlist());
  if (!row || state.quotes.has(symbol)) return;
  const cell = $('[data-field="price"]', row);
  cell.textContent = "n/a";
  row.title = message;
  row.dataset.unavailable = "true";
}

function storeQuote(symbol, quote, meta, animate) {
  state.quotes.set(symbol, {
    price: quote.price,
    change: quote.change,
    changePercent: quote.changePercent,
    volume: quote.volume,
    meta,
  });
  paintQuote(symbol, animate);
}

function showWatchlistMessage(text) {
  const note = $(".watch-message", panels.watchlist());
  note.textContent = text;
}

async function addSymbol(raw) {
  const symbol = raw.trim().toUpperCase();
  if (!symbol) return;
  if (state.watchlist.includes(symbol)) {
    showWatchlistMessage(`${symbol} is already on the watchlist`);
    return;
  }
  if (state.watchlist.length >= MAX_WATCHLIST) {
    showWatchlistMessage(`at most ${MAX_WATCHLIST} symbols`);
    return;
  }
  try {
    const quote = await state.api.quote(symbol); // an unknown ticker is a 404: never subscribed
    state.watchlist.push(symbol);
    saveWatchlist();
    renderWatchlistRows();
    storeQuote(symbol, quote, metaOf(quote), false);
    state.stream?.subscribeSymbols([symbol]);
    showWatchlistMessage(`added ${symbol}`);
  } catch (error) {
    showWatchlistMessage(error instanceof ApiError ? `${symbol}: ${error.message}` : `${symbol} could not be added`);
  }
}

function removeSymbol(symbol) {
  state.watchlist = state.watchlist.filter((s) => s !== symbol);
  state.quotes.delete(symbol);
  saveWatchlist();
  renderWatchlistRows();
  state.stream?.unsubscribeSymbols([symbol]);
  showWatchlistMessage(`removed ${symbol}`);
}

// Suggestions from POST /search, debounced (each search spends the per-user request budget).
let searchTimer = null;
let searchSerial = 0;
const searchCache = new Map();

function renderSuggestions(results) {
  const list = $(".suggestions", panels.watchlist());
  list.replaceChildren(
    ...results.map((r) =>
      el("li", { role: "option" }, [
        el("button", { type: "button", "data-action": "suggestion", "data-symbol": r.symbol }, [
          el("span", { class: "sym", text: r.symbol }),
          el("span", { class: "sugg-name", text: r.name || "" }),
        ]),
      ]),
    ),
  );
  list.hidden = results.length === 0;
}

function onSearchInput(event) {
  const query = event.target.value.trim();
  clearTimeout(searchTimer);
  if (!query) {
    renderSuggestions([]);
    return;
  }
  searchTimer = setTimeout(async () => {
    const serial = ++searchSerial;
    try {
      const key = query.toLowerCase();
      const results = searchCache.get(key) || (await state.api.search(query)).results || [];
      searchCache.set(key, results);
      if (serial === searchSerial) renderSuggestions(results.filter((r) => !state.watchlist.includes(r.symbol)));
    } catch {
      if (serial === searchSerial) renderSuggestions([]);
    }
  }, 300);
}

// --- chart -----------------------------------------------------------------------------------------

async function loadChart() {
  const panel = panels.chart();
  const symbol = state.selected;
  $(".chart-symbol", panel).textContent = symbol || "";
  for (const button of panel.querySelectorAll("[data-period]")) {
    button.setAttribute("aria-pressed", String(button.dataset.period === state.period));
  }
  for (const button of panel.querySelectorAll("[data-kind]")) {
    button.setAttribute("aria-pressed", String(button.dataset.kind === state.chartKind));
  }
  if (!symbol) return;
  const [period, interval] = PERIODS.find(([p]) => p === state.period) || PERIODS[2];
  const plot = $(".plot", panel);
  plot.setAttribute("aria-busy", "true");
  try {
    const data = await state.api.historical(symbol, period, interval);
    if (state.selected !== symbol) return;
    setPanelMeta(panel, metaOf(data));
    panel.dataset.symbol = symbol;
    panel.dataset.bars = String(data.bars.length);
    const last = data.bars[data.bars.length - 1];
    panel.dataset.lastClose = last ? String(last.close) : "";
    state.chartData = { symbol, period, bars: data.bars };
    drawChart();
  } catch (error) {
    plot.replaceChildren(el("p", { class: "note", text: `chart unavailable: ${error.message}` }));
  } finally {
    plot.removeAttribute("aria-busy");
  }
}

// Drawn at the plot's own width (not scaled), so labels keep their size on a phone.
function drawChart() {
  const plot = $(".plot", panels.chart());
  const chart = state.chartData;
  if (!chart) return;
  const width = Math.max(280, Math.round(plot.clientWidth || 720));
  const height = width < 500 ? 220 : 300;
  plot.replaceChildren(
    priceChart(chart.bars, {
      kind: state.chartKind,
      width,
      height,
      label: `${chart.symbol} ${chart.period} ${state.chartKind} chart`,
    }),
  );
}

let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(drawChart, 150);
});

function selectSymbol(symbol) {
  state.selected = symbol;
  sessionStorage.setItem(SELECTED_KEY, symbol);
  loadChart();
}

// --- stream wiring ---------------------------------------------------------------------------------

function setStatus(status) {
  const node = $('[data-testid="connection-status"]');
  node.textContent = status;
  node.dataset.state = status;
}

function applyUpdate(update, animate) {
  const data = update.data || {};
  switch (update.type) {
    case "quote_update":
      if (state.watchlist.includes(data.symbol)) storeQuote(data.symbol, data.quote, metaOf(data), animate);
      break;
    case "market_update":
      if (data.channel === "indices") renderIndices(data);
      else if (data.channel === "movers") renderMovers(data);
      break;
    case "sector_update":
      renderSectors(data);
      break;
    case "sentiment_update":
      renderSentiment(data);
      break;
    default:
      break;
  }
}

async function renewStreamToken(config, tokens) {
  try {
    state.stream.setToken(await tokens.renew());
  } catch (error) {
    if (error instanceof AuthRequired) askForToken(config, tokens);
  }
}

function startStream(config, tokens) {
  if (state.stream) state.stream.stop(); // a new token (pasted after a refusal) starts a fresh stream
  if (!config.websocket_url) {
    setStatus("offline");
    return;
  }
  state.stream = new MarketStream({
    url: config.websocket_url,
    token: tokens.current(),
    symbols: () => state.watchlist,
    handlers: {
      onStatus: setStatus,
      // A snapshot (after a subscribe, a reconnect or a resync) replaces values without flashing.
      onUpdates: (updates, { snapshot }) => updates.forEach((u) => applyUpdate(u, !snapshot)),
      onError: async (error) => {
        if (/symbol/.test(error.code || "")) showWatchlistMessage(error.message || error.code);
        if (error.code === "token_expired") {
          // The service closes the connection next; the reconnect must carry a fresh token.
          await renewStreamToken(config, tokens);
        }
      },
      onResync: () => {
        document.body.dataset.resyncs = String(Number(document.body.dataset.resyncs || 0) + 1);
      },
      onAuthFailed: () => renewStreamToken(config, tokens),
    },
  });
  state.stream.start();
}

// --- start -----------------------------------------------------------------------------------------

function askForToken(config, tokens) {
  const form = $("#auth");
  form.hidden = false;
  const login = $("#login-link");
  if (config.login_url) {
    login.href = config.login_url;
    login.hidden = false;
  }
  form.addEventListener(
    "submit",
    (event) => {
      event.preventDefault();
      const field = $("#token-input");
      const token = field.value.trim();
      field.value = "";
      if (!token) return;
      tokens.set(token);
      form.hidden = true;
      start(config, tokens);
    },
    { once: true },
  );
}

function showError(message) {
  const banner = $("#page-error");
  banner.textContent = message;
  banner.hidden = !message;
}

async function start(config, tokens) {
  state.api = new Api(config, tokens);
  state.watchlist = loadWatchlist(config.popular_symbols || []);
  state.selected = sessionStorage.getItem(SELECTED_KEY) || state.watchlist[0] || null;
  renderWatchlistRows();
  startStream(config, tokens);
  // The first paint over REST, in two requests (both fit the per-user budget many times over).
  const first = [
    state.api.overview().then((overview) => {
      if (overview.indices) renderIndices(overview.indices);
      if (overview.sectors) renderSectors(overview.sectors);
      if (overview.sentiment) renderSentiment(overview.sentiment);
      if (overview.gainers || overview.losers || overview.actives) renderMovers(moversOf(overview));
      if (overview.errors && Object.keys(overview.errors).length) {
        showError(`some market data is unavailable: ${Object.keys(overview.errors).join(", ")}`);
      }
    }),
    state.watchlist.length
      ? state.api.quotes(state.watchlist).then((batch) => {
          for (const item of batch.quotes || []) {
            if (item.quote && !state.quotes.has(item.symbol)) storeQuote(item.symbol, item.quote, metaOf(item.quote), false);
            if (item.error) markUnavailable(item.symbol, item.error.message || item.error.code);
          }
        })
      : Promise.resolve(),
    loadChart(),
  ];
  const results = await Promise.allSettled(first);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) {
    if (failed.reason instanceof AuthRequired) askForToken(config, tokens);
    else showError(`could not load: ${failed.reason.message}`);
  }
}

// GET /overview holds the three lists as gainers, losers and actives, each a /movers payload.
function moversOf(overview) {
  const parts = [overview.gainers, overview.losers, overview.actives].filter(Boolean);
  const newest = parts.map((p) => p.as_of).sort().pop();
  return {
    gainers: (overview.gainers && overview.gainers.movers) || [],
    losers: (overview.losers && overview.losers.movers) || [],
    actives: (overview.actives && overview.actives.movers) || [],
    source: parts.length ? parts[0].source : "",
    as_of: newest,
    stale: parts.some((p) => p.stale),
    replay_day: parts.length ? parts[0].replay_day : null,
  };
}

function wireEvents() {
  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-action]");
    if (!target) return;
    const { action, symbol } = target.dataset;
    if (action === "remove") removeSymbol(symbol);
    if (action === "chart") selectSymbol(symbol);
    if (action === "suggestion") {
      $("#symbol-input").value = "";
      renderSuggestions([]);
      addSymbol(symbol);
    }
  });
  $("#add-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("#symbol-input");
    const value = input.value;
    input.value = "";
    renderSuggestions([]);
    addSymbol(value);
  });
  $("#symbol-input").addEventListener("input", onSearchInput);
  // Keyboard: ArrowDown from the field enters the suggestions, arrows move within them, Escape leaves.
  $("#symbol-input").addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") {
      const first = $(".suggestions button", panels.watchlist());
      if (first) {
        event.preventDefault();
        first.focus();
      }
    }
  });
  $(".suggestions", panels.watchlist()).addEventListener("keydown", (event) => {
    const buttons = [...panels.watchlist().querySelectorAll(".suggestions button")];
    const index = buttons.indexOf(document.activeElement);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const next = index + (event.key === "ArrowDown" ? 1 : -1);
      if (next < 0) $("#symbol-input").focus();
      else buttons[Math.min(next, buttons.length - 1)].focus();
    } else if (event.key === "Escape") {
      renderSuggestions([]);
      $("#symbol-input").focus();
    }
  });
  for (const button of document.querySelectorAll("[data-period]")) {
    button.addEventListener("click", () => {
      state.period = button.dataset.period;
      loadChart();
    });
  }
  for (const button of document.querySelectorAll("[data-kind]")) {
    button.addEventListener("click", () => {
      state.chartKind = button.dataset.kind;
      for (const other of document.querySelectorAll("[data-kind]")) {
        other.setAttribute("aria-pressed", String(other.dataset.kind === state.chartKind));
      }
      drawChart(); // same bars, drawn the other way: no request
    });
  }
}

async function main() {
  wireEvents();
  setStatus("offline");
  let config;
  try {
    config = await loadConfig();
  } catch (error) {
    showError(error.message);
    return;
  }
  document.body.dataset.stage = config.stage;
  const tokens = new TokenStore(config);
  const token = await tokens.obtain().catch(() => null);
  if (!token) {
    askForToken(config, tokens);
    return;
  }
  start(config, tokens);
}

main();
