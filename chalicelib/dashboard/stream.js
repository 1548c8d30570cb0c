// The WebSocket client: the service's batch format, `seq` gap detection with `resync`, keep-alive pings,
// reconnects with backoff and jitter (resubscribing, the snapshot taken as a resync), and a quiet
// reconnect before API Gateway's 2-hour connection limit. The token goes in the subprotocol
// (["bearer", token]): never in the URL, so it is in no history, log or address bar.

const PING_EVERY_MS = 4 * 60 * 1000; // API Gateway closes a connection idle for 10 minutes
const ROTATE_AFTER_MS = (2 * 60 - 10) * 60 * 1000; // before the 2-hour maximum, with margin
const GAP_WAIT_MS = 1000; // two publishers' numbers can arrive swapped: wait before calling it a gap
const RESYNC_INTERVAL_MS = 10 * 1000; // the service allows one resync per connection per 10 s
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30 * 1000;
const OFFLINE_AFTER_ATTEMPTS = 5;

export const CHANNELS = ["indices", "sectors", "sentiment", "movers"];

// One socket and its sequence state. The stream owns at most two (the current one and, while rotating,
// its successor).
class Connection {
  constructor(stream, url, token) {
    this.stream = stream;
    this.lastSeq = null; // highest contiguous seq received
    this.pending = new Set(); // seq numbers received beyond a hole
    this.gapTimer = null;
    this.lastResyncAt = 0;
    this.pingTimer = null;
    this.ready = false; // got its first snapshot or ack
    this.closedByUs = false;
    this.socket = new WebSocket(url, ["bearer", token]);
    this.socket.addEventListener("open", () => this.onOpen());
    this.socket.addEventListener("message", (event) => this.onMessage(event));
    this.socket.addEventListener("close", (event) => this.onClose(event));
  }

  send(message) {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  onOpen() {
    this.send({ type: "subscribe", data: { type: "market_data", channels: CHANNELS } });
    const symbols = this.stream.symbols();
    if (symbols.length) this.send({ type: "subscribe", data: { type: "stock_quotes", symbols } });
    this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_EVERY_MS);
  }

  onMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message.type === "subscribed" || message.type === "unsubscribed") {
      this.markReady();
      return;
    }
    if (message.type === "pong") return;
    if (message.type === "error") {
      this.stream.handlers.onError(message.data || {});
      return;
    }
    const updates = message.type === "batch" ? (message.data && message.data.updates) || [] : [message];
    const snapshot = updates.length > 0 && updates.every((u) => u.data && u.data.snapshot);
    this.track(Number(message.seq), snapshot);
    this.markReady();
    this.stream.handlers.onUpdates(updates, { snapshot });
  }

  markReady() {
    if (this.ready) return;
    this.ready = true;
    this.stream.onReady(this);
  }

  // seq bookkeeping (README "For client authors"). 0 = not sequenced: never gap-checked.
  track(seq, snapshot) {
    if (!Number.isFinite(seq) || seq === 0) return;
    if (this.lastSeq === null || snapshot) {
      // The first data message, or a snapshot: it holds every subscribed value, so whatever came before
      // it is covered.
      this.lastSeq = Math.max(this.lastSeq || 0, seq);
      this.pending = new Set([...this.pending].filter((n) => n > this.lastSeq));
      this.advance();
      return;
    }
    if (seq < this.lastSeq - 1000) {
      // Numbering restarted far lower (the sequencing store lost its state): a restart, so resync.
      this.lastSeq = seq;
      this.pending.clear();
      this.resync();
      return;
    }
    if (seq <= this.lastSeq) return; // a late number of a hole already given up on
    this.pending.add(seq);
    this.advance();
    if (this.pending.size && this.gapTimer === null) {
      this.gapTimer = setTimeout(() => {
        this.gapTimer = null;
        if (this.pending.size) this.resync();
      }, GAP_WAIT_MS);
    }
  }

  advance() {
    while (this.pending.has(this.lastSeq + 1)) {
      this.pending.delete(this.lastSeq + 1);
      this.lastSeq += 1;
    }
    if (!this.pending.size && this.gapTimer !== null) {
      clearTimeout(this.gapTimer);
      this.gapTimer = null;
    }
  }

  resync() {
    const now = Date.now();
    const wait = this.lastResyncAt + RESYNC_INTERVAL_MS - now;
    if (wait > 0) {
      this.gapTimer = setTimeout(() => {
        this.gapTimer = null;
        if (this.pending.size) this.resync();
      }, wait);
      return;
    }
    this.lastResyncAt = now;
    this.stream.handlers.onResync();
    // Everything up to the newest number seen is covered by the snapshot that answers.
    this.lastSeq = Math.max(this.lastSeq || 0, ...this.pending);
    this.pending.clear();
    this.send({ type: "resync" });
  }

  onClose(event) {
    clearInterval(this.pingTimer);
    if (this.gapTimer !== null) clearTimeout(this.gapTimer);
    this.stream.onConnectionClosed(this, event);
  }

  close() {
    this.closedByUs = true;
    clearInterval(this.pingTimer);
    try {
      this.socket.close(1000, "client closing");
    } catch {
      // already closed
    }
  }
}

export class MarketStream {
  // handlers: onStatus(status), onUpdates(updates, {snapshot}), onError(data), onResync(), onAuthFailed()
  constructor({ url, token, symbols, handlers }) {
    this.url = url;
    this.token = token;
    this.symbols = symbols;
    this.handlers = handlers;
    this.current = null;
    this.next = null;
    this.attempts = 0;
    this.retryTimer = null;
    this.rotateTimer = null;
    this.stopped = false;
    this.onlineListener = null;
  }

  start() {
    this.stopped = false;
    if (!this.onlineListener && typeof window !== "undefined") {
      // The browser says its network is gone: whatever the socket looks like, nothing can arrive.
      window.addEventListener("offline", () => {
        if (!this.stopped) this.handlers.onStatus("offline");
      });
      // Back online: retry now instead of at the end of a long backoff; a socket that looks open may be
      // dead (its close never arrived), so it is replaced quietly by a fresh connection.
      this.onlineListener = () => {
        if (this.stopped) return;
        if (!this.current) {
          clearTimeout(this.retryTimer);
          this.retryTimer = null;
          this.attempts = 0;
          this.open();
          return;
        }
        this.rotate(); // `live` again once the fresh connection has its snapshot
      };
      window.addEventListener("online", this.onlineListener);
    }
    // The first connect is reported like a reconnect: trying, not yet live (the status has three states).
    this.handlers.onStatus("reconnecting");
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.rotateTimer);
    for (const c of [this.current, this.next]) if (c) c.close();
    this.current = this.next = null;
    this.handlers.onStatus("offline");
  }

  setToken(token) {
    this.token = token;
  }

  open() {
    const url = new URL(this.url);
    url.searchParams.set("format", "batch");
    this.current = new Connection(this, url.toString(), this.token);
  }

  onReady(connection) {
    if (connection === this.next) {
      // The successor is subscribed and has its snapshot: retire the old socket without a status change.
      const old = this.current;
      this.current = connection;
      this.next = null;
      if (old) old.close();
    }
    if (connection !== this.current) return;
    this.attempts = 0;
    this.handlers.onStatus("live");
    clearTimeout(this.rotateTimer);
    const jitter = Math.random() * 5 * 60 * 1000;
    this.rotateTimer = setTimeout(() => this.rotate(), ROTATE_AFTER_MS - jitter);
  }

  rotate() {
    if (this.stopped || this.next) return;
    const url = new URL(this.url);
    url.searchParams.set("format", "batch");
    this.next = new Connection(this, url.toString(), this.token);
  }

  onConnectionClosed(connection, event) {
    if (connection === this.next) {
      this.next = null; // the rotation failed; the current socket carries on until it closes itself
      return;
    }
    if (connection !== this.current || connection.closedByUs || this.stopped) return;
    this.current = null;
    const online = typeof navigator === "undefined" || navigator.onLine;
    if (online && !connection.ready && (event.code === 1006 || event.code === 1002) && this.attempts >= 1) {
      // A handshake refused more than once in a row, while online, may be an expired token.
      this.handlers.onAuthFailed();
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    this.attempts += 1;
    const offline = this.attempts > OFFLINE_AFTER_ATTEMPTS || (typeof navigator !== "undefined" && !navigator.onLine);
    this.handlers.onStatus(offline ? "offline" : "reconnecting");
    // Exponential backoff with full jitter: many clients dropped at once do not reconnect in step.
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (this.attempts - 1));
    const delay = Math.random() * ceiling;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.stopped) this.open();
    }, delay);
  }

  send(message) {
    for (const c of [this.current, this.next]) if (c) c.send(message);
  }

  subscribeSymbols(symbols) {
    if (symbols.length) this.send({ type: "subscribe", data: { type: "stock_quotes", symbols } });
  }

  unsubscribeSymbols(symbols) {
    if (symbols.length) this.send({ type: "unsubscribe", data: { type: "stock_quotes", symbols } });
  }
}
