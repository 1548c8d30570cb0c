// Configuration, the token and REST calls. Every URL is relative to the page, so the same files work at
// http://127.0.0.1:8000/ (make run) and under a deployed API's stage prefix (https://.../dev/).

const TOKEN_KEY = "market-dashboard.token";

export class AuthRequired extends Error {}

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export async function loadConfig() {
  const response = await fetch("api/v1/config", { headers: { Accept: "application/json" } });
  if (!response.ok) throw new ApiError(response.status, "config", "the page's configuration could not be read");
  return response.json();
}

function claims(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload));
  } catch {
    return null;
  }
}

function usable(token) {
  const body = token && claims(token);
  return Boolean(body && typeof body.exp === "number" && body.exp * 1000 > Date.now() + 60 * 1000);
}

// The token lives in this tab's sessionStorage (and memory): never in a URL the page shows or logs.
export class TokenStore {
  constructor(config) {
    this.config = config;
    this.token = null;
  }

  current() {
    if (this.token && usable(this.token)) return this.token;
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved && usable(saved)) {
      this.token = saved;
      return saved;
    }
    return null;
  }

  set(token) {
    this.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
  }

  clear() {
    this.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
  }

  // A token handed back by the login page in the URL fragment (#access_token=... or #id_token=...) is
  // taken and the fragment removed at once, before anything could record the address.
  fromFragment() {
    if (!location.hash) return null;
    const params = new URLSearchParams(location.hash.slice(1));
    const token = params.get("access_token") || params.get("id_token") || params.get("token");
    if (token) {
      history.replaceState(null, "", location.pathname + location.search);
      if (usable(token)) {
        this.set(token);
        return token;
      }
    }
    return null;
  }

  // Locally (make run) the gateway hands out dev tokens; no deployed stage has that endpoint.
  async fromDevEndpoint() {
    if (this.config.stage !== "local") return null;
    const response = await fetch("_local/dev-token", { headers: { Accept: "application/json" } });
    if (!response.ok) return null;
    const body = await response.json();
    this.set(body.token);
    return body.token;
  }

  async obtain() {
    return this.current() || this.fromFragment() || (await this.fromDevEndpoint());
  }

  // After a 401: a local page fetches a new dev token by itself; a deployed one must ask the user. A
  // network failure propagates as itself (the stack is down, not the token): callers keep retrying.
  async renew() {
    const token = await this.fromDevEndpoint();
    if (token) return token;
    this.clear();
    throw new AuthRequired("a token is needed");
  }
}

export class Api {
  constructor(config, tokens) {
    this.base = config.api_base.replace(/\/$/, "");
    this.tokens = tokens;
  }

  async request(path, { method = "GET", body } = {}, retried = false) {
    const token = this.tokens.current();
    if (!token) throw new AuthRequired("a token is needed");
    const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(`${this.base}/${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401 && !retried) {
      await this.tokens.renew();
      return this.request(path, { method, body }, true);
    }
    const payload = await response.json().catch(() => null);
    if (!response.ok) {
      const error = (payload && payload.error) || {};
      const retryAfter = Number(response.headers.get("Retry-After")) || null;
      throw new ApiError(response.status, error.code || "error", error.message || `HTTP ${response.status}`, retryAfter);
    }
    return payload;
  }

  overview() {
    return this.request("overview");
  }

  quotes(symbols) {
    return this.request(`quotes?symbols=${symbols.map(encodeURIComponent).join(",")}`);
  }

  quote(symbol) {
    return this.request(`quote/${encodeURIComponent(symbol)}`);
  }

  historical(symbol, period, interval) {
    return this.request(`historical/${encodeURIComponent(symbol)}?period=${period}&interval=${interval}`);
  }

  search(query) {
    return this.request("search", { method: "POST", body: { query, limit: 8 } });
  }
}
