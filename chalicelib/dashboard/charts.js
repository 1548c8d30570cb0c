// Small SVG drawing helpers of our own (no third-party code): a price line, candlesticks and a gauge.
// Everything is built with DOM calls (no innerHTML, no inline style attributes: the page's CSP forbids them).

const SVG_NS = "http://www.w3.org/2000/svg";

export function svg(tag, attributes = {}, children = []) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children) node.append(child);
  return node;
}

function text(x, y, content, cls, anchor = "start") {
  const node = svg("text", { x, y, class: cls, "text-anchor": anchor });
  node.textContent = content;
  return node;
}

function niceTicks(low, high, count) {
  if (!(high > low)) return [low];
  const raw = (high - low) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(low / step) * step; v <= high + step * 1e-9; v += step) ticks.push(Number(v.toFixed(10)));
  return ticks;
}

const shortDate = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", year: "2-digit", timeZone: "UTC" });
const priceFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2, minimumFractionDigits: 2 });

// bars: [{timestamp, open, high, low, close}], oldest first. kind: "line" | "candles".
export function priceChart(bars, { kind = "line", width = 720, height = 300, label = "price chart" } = {}) {
  const margin = { top: 12, right: 64, bottom: 28, left: 8 };
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "price-chart",
    role: "img",
    "aria-label": label,
  });
  if (!bars.length) {
    root.append(text(width / 2, height / 2, "no bars for this period", "axis-label", "middle"));
    return root;
  }
  const lows = bars.map((b) => (kind === "candles" ? b.low : b.close));
  const highs = bars.map((b) => (kind === "candles" ? b.high : b.close));
  let low = Math.min(...lows);
  let high = Math.max(...highs);
  if (high === low) {
    high += 1;
    low -= 1;
  }
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const x = (i) => margin.left + (bars.length === 1 ? plotW / 2 : (i / (bars.length - 1)) * plotW);
  const y = (v) => margin.top + (1 - (v - low) / (high - low)) * plotH;

  const grid = svg("g", { class: "grid" });
  for (const tick of niceTicks(low, high, 4)) {
    grid.append(svg("line", { x1: margin.left, x2: margin.left + plotW, y1: y(tick), y2: y(tick) }));
    grid.append(text(margin.left + plotW + 6, y(tick) + 4, priceFormat.format(tick), "axis-label"));
  }
  root.append(grid);
  const first = new Date(bars[0].timestamp);
  const last = new Date(bars[bars.length - 1].timestamp);
  root.append(text(margin.left, height - 8, shortDate.format(first), "axis-label"));
  root.append(text(margin.left + plotW, height - 8, shortDate.format(last), "axis-label", "end"));

  if (kind === "candles") {
    const slot = plotW / bars.length;
    const body = Math.max(1, Math.min(12, slot * 0.6));
    const group = svg("g", { class: "candles" });
    bars.forEach((b, i) => {
      const up = b.close >= b.open;
      const cx = bars.length === 1 ? x(0) : margin.left + slot * (i + 0.5);
      const top = y(Math.max(b.open, b.close));
      const bottom = y(Math.min(b.open, b.close));
      // Up candles are hollow, down candles filled: readable without colour.
      const candle = svg("g", { class: up ? "candle up" : "candle down" });
      candle.append(svg("line", { x1: cx, x2: cx, y1: y(b.high), y2: y(b.low) }));
      candle.append(svg("rect", { x: cx - body / 2, y: top, width: body, height: Math.max(1, bottom - top) }));
      const tip = svg("title");
      tip.textContent = `${shortDate.format(new Date(b.timestamp))}: O ${priceFormat.format(b.open)} H ${priceFormat.format(
        b.high,
      )} L ${priceFormat.format(b.low)} C ${priceFormat.format(b.close)}`;
      candle.append(tip);
      group.append(candle);
    });
    root.append(group);
  } else {
    const points = bars.map((b, i) => `${x(i).toFixed(1)},${y(b.close).toFixed(1)}`).join(" ");
    const up = bars[bars.length - 1].close >= bars[0].close;
    root.append(svg("polyline", { points, class: up ? "line up" : "line down", fill: "none" }));
    const end = bars[bars.length - 1];
    const dot = svg("circle", { cx: x(bars.length - 1), cy: y(end.close), r: 3, class: "line-end" });
    const tip = svg("title");
    tip.textContent = `${shortDate.format(last)}: close ${priceFormat.format(end.close)}`;
    dot.append(tip);
    root.append(dot);
  }
  return root;
}

// A half-circle gauge for a 0..100 score, with the needle at `score`.
export function gauge(score, { label = "" } = {}) {
  const width = 220;
  const height = 130;
  const cx = 110;
  const cy = 112;
  const r = 90;
  const point = (value, radius) => {
    const angle = Math.PI * (1 - value / 100);
    return [cx + radius * Math.cos(angle), cy - radius * Math.sin(angle)];
  };
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "gauge", role: "img", "aria-label": label });
  // Five bands (extreme fear .. extreme greed), told apart by position and pattern of ticks as well as colour.
  const bands = [0, 20, 40, 60, 80, 100];
  for (let i = 0; i < bands.length - 1; i += 1) {
    const [x1, y1] = point(bands[i], r);
    const [x2, y2] = point(bands[i + 1], r);
    root.append(svg("path", { d: `M ${x1} ${y1} A ${r} ${r} 0 0 1 ${x2} ${y2}`, class: `band band-${i}` }));
  }
  for (const tick of bands) {
    const [x1, y1] = point(tick, r - 14);
    const [x2, y2] = point(tick, r + 8);
    root.append(svg("line", { x1, y1, x2, y2, class: "gauge-tick" }));
  }
  const clamped = Math.max(0, Math.min(100, score));
  const [nx, ny] = point(clamped, r - 22);
  root.append(svg("line", { x1: cx, y1: cy, x2: nx, y2: ny, class: "needle" }));
  root.append(svg("circle", { cx, cy, r: 6, class: "needle-hub" }));
  root.append(text(cx - r, cy + 16, "fear", "axis-label", "middle"));
  root.append(text(cx + r, cy + 16, "greed", "axis-label", "middle"));
  return root;
}
