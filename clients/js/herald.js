// Herald's browser client: one WebSocket to Herald, reconnected with jittered backoff, resumed from a
// cursor kept per stream, so an app sees every message of its streams once, in order, across drops.
// Where a WebSocket cannot be opened (a proxy that drops upgrades, a runtime without WebSocket), it
// falls back to Server-Sent Events on /v1/sse: the same messages, cursor and close codes, receive only.
// A dependency-free ES module (PROTOCOL.md: the wire contract). Herald serves it at /herald.js.
//
//   import { connect } from "/herald.js";
//   const herald = connect("wss://push.example.com/v1/ws", { token: () => fetchToken() });
//   herald.addEventListener("message", (e) => show(e.detail.stream, e.detail.data));

/** What to do after the server closed the connection with `code`. */
export function closeAction(code) {
  switch (code) {
    case 1012: // node restarting or draining
    case 1013: // overloaded
    case 4008: // slow consumer: resume from the cursor
    case 1001: // going away
    case 1006: // the connection dropped without a close frame (network, node crash)
    case 1011: // internal error
      return "resume";
    case 4009: // token expired
      return "refresh-token";
    case 4001: // replaced by a newer connection of the same user
    case 4003: // kicked (logout)
      return "stop";
    default:
      // 1000 and the protocol errors (1002, 1007, 1008, 1009): reconnecting would not help.
      return "stop";
  }
}

/**
 * Exponential backoff with full jitter: a random delay between 0 and min(cap, base * 2^attempt)
 * milliseconds, so that thousands of clients dropped together come back spread out.
 */
export function backoffDelay(attempt, { base = 500, cap = 30000, random = Math.random } = {}) {
  const ceiling = Math.min(cap, base * Math.pow(2, Math.max(0, attempt)));
  return Math.floor(random() * ceiling);
}

/** The cursor as the `cursor` query parameter: `u:1842,*:78,c:news:13`. */
export function cursorText(positions) {
  return Object.keys(positions)
    .sort()
    .map((stream) => `${stream}:${positions[stream]}`)
    .join(",");
}

/** The `exp` claim of a JWT in Unix milliseconds, without verifying it; null without one. */
export function tokenExpiry(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const exp = JSON.parse(atob(payload + "===".slice((payload.length + 3) % 4))).exp;
    return typeof exp === "number" && Number.isFinite(exp) && exp > 0 ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/** How long before `exp` to refresh: half the time left, at least 1 s and at most 60 s. */
export function refreshLead(remainingMs) {
  return Math.min(60000, Math.max(1000, remainingMs / 2));
}

/** The `sub` and `device` claims of a JWT, without verifying it (the server does). */
export function tokenIdentity(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = JSON.parse(atob(payload + "===".slice((payload.length + 3) % 4)));
    return { user: String(json.sub ?? ""), device: json.device == null ? "" : String(json.device) };
  } catch {
    return { user: "", device: "" };
  }
}

/**
 * Where a cursor lives between page loads: `localStorage` when the runtime has it, else memory.
 * One entry per user and device, so that a cursor is never sent with another user's token.
 */
export class CursorStore {
  constructor(storage = CursorStore.defaultStorage()) {
    this.storage = storage;
    this.memory = new Map();
  }

  static defaultStorage() {
    try {
      if (typeof localStorage !== "undefined") {
        localStorage.setItem("herald:probe", "1");
        localStorage.removeItem("herald:probe");
        return localStorage;
      }
    } catch {
      // Private mode or a sandboxed frame: fall back to memory.
    }
    return null;
  }

  load(key) {
    const text = this.storage ? this.storage.getItem(key) : this.memory.get(key);
    if (!text) return null;
    try {
      const saved = JSON.parse(text);
      if (typeof saved.epoch !== "string" || typeof saved.positions !== "object" || saved.positions === null) return null;
      return saved;
    } catch {
      return null;
    }
  }

  save(key, epoch, positions) {
    const text = JSON.stringify({ epoch, positions });
    if (this.storage) this.storage.setItem(key, text);
    else this.memory.set(key, text);
  }

  clear(key) {
    if (this.storage) this.storage.removeItem(key);
    else this.memory.delete(key);
  }
}

/**
 * One logical connection to Herald, reconnecting as the close codes say.
 *
 * Events (`addEventListener`): `state` ({state}), `welcome` (the welcome frame), `message` ({stream,
 * offset, id, data, encoding}) and `message:STREAM` for one stream, `resync` (the server could not
 * replay: {reason}; fetch the current state from your backend), `error` (an error frame or a
 * transport error: {code, message}), `close` ({code, reason, action}), `transport` ({transport}: an
 * attempt uses another transport than the one before, `"websocket"` or `"sse"`).
 * States: `connecting`, `open`, `reconnecting`, `closed`.
 *
 * `options.transport`: `"auto"` (default: each attempt tries a WebSocket, and if it fails before it
 * opens, an event stream at once), `"websocket"` or `"sse"`. Over SSE the
 * connection only receives: `publish`, `subscribe`, `unsubscribe` and `ack` return false (channels
 * given to `subscribe` are followed from the next reconnect).
 */
export class HeraldConnection extends EventTarget {
  constructor(url, options = {}) {
    super();
    if (!options.token && options.anonymous !== true) {
      throw new TypeError("connect(url, { token }) needs a token string or a function returning one (or anonymous: true)");
    }
    this.url = url;
    this.options = options;
    this.channels = [...(options.channels ?? [])];
    this.store = options.cursorStore ?? new CursorStore(options.storage);
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.EventSource = options.EventSource ?? globalThis.EventSource;
    this.transport = options.transport === "sse" ? "sse" : "websocket";
    this.setTimer = options.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    this.random = options.random ?? Math.random;
    this.backoff = { base: options.backoffBase ?? 500, cap: options.backoffCap ?? 30000 };
    this.state = "closed";
    this.attempt = 0;
    this.positions = {};
    this.epoch = null;
    this.socket = null;
    this.stopped = false;
    this.token = null;
    this.storageKey = null;
    // Acks: the last offset per stream not acked yet, sent together at most once per interval, so
    // the node can commit the device's position (a new tab or a cleared store resumes from it).
    this.ackInterval = options.ackInterval ?? 1000;
    this.unacked = {};
    this.ackTimer = false;
    // History requests waiting for their answer, by the id this client gave them.
    this.histories = new Map();
    this.historyCount = 0;
  }

  /** Opens the connection (once); `connect()` calls it. */
  open() {
    this.stopped = false;
    this.#connect();
    return this;
  }

  /** Closes for good: no reconnect. The cursor stays stored for the next session. */
  close() {
    this.stopped = true;
    if (this.socket) this.socket.close(1000, "closed by the app");
    this.#setState("closed");
  }

  /**
   * Publishes `data` upstream; with `sync`, also to the user's other devices. With `id` (your own,
   * 1 to 128 bytes), the node answers a `published` event once Kafka took it, or an `error` event
   * carrying the id: send it again with the same id, and the other devices still receive it once.
   */
  publish(data, { sync = false, id, channel } = {}) {
    // Into a channel (where its namespace allows it): every viewer of the channel receives it.
    const frame = channel === undefined ? { type: "publish", data, sync } : { type: "publish", channel, data };
    if (id !== undefined) frame.id = id;
    return this.#send(frame);
  }

  /** Subscribes to a channel (the token must grant it); with `offset`, replays it from there. */
  subscribe(channel, { offset } = {}) {
    if (!this.channels.includes(channel)) this.channels.push(channel);
    const frame = { type: "subscribe", channel };
    if (offset !== undefined) frame.offset = offset;
    return this.#send(frame);
  }

  unsubscribe(channel) {
    this.channels = this.channels.filter((c) => c !== channel);
    return this.#send({ type: "unsubscribe", channel });
  }

  /**
   * The newest `limit` messages of `stream` (`u`, `*` or `c:NAME`) before the offset `before`, oldest
   * first (docs/protocol.md §7): resolves with `{stream, messages, earliest, end, next, expired, cut,
   * limit}`, each message shaped as a `message` event's detail; page back with `before: page.next`.
   * Rejects with an Error whose `code` is the node's (`channel-not-allowed`, `history-not-offered`,
   * `busy`, `unavailable`, `bad-request`), or `not-connected` (no open WebSocket: over SSE the
   * connection only receives), or `closed` (the connection dropped before the answer). History is not
   * part of the cursor: the messages it returns are not acked, and live ones still arrive as events.
   */
  history(stream, { limit = 50, before } = {}) {
    const id = `herald-history-${++this.historyCount}`;
    const frame = { type: "history", id, stream, limit };
    if (before !== undefined && before !== null) frame.before = before;
    return new Promise((resolve, reject) => {
      this.histories.set(id, { resolve, reject, socket: this.socket });
      if (!this.#send(frame)) {
        this.histories.delete(id);
        reject(Object.assign(new Error("history needs an open WebSocket connection"), { code: "not-connected" }));
      }
    });
  }

  /** Fails the history requests sent on `socket`, which closed before answering them. */
  #dropHistories(socket) {
    for (const [id, pending] of this.histories) {
      if (pending.socket !== socket) continue;
      this.histories.delete(id);
      pending.reject(Object.assign(new Error("the connection closed before the history answer"), { code: "closed" }));
    }
  }

  /** Tells the node the device has the messages of `stream` up to `offset` (sent for you, throttled, unless `ackInterval` is 0). */
  ack(stream, offset) {
    return this.#send({ type: "ack", stream, offset });
  }

  #scheduleAck(stream, offset) {
    if (!(this.ackInterval > 0)) return;
    this.unacked[stream] = offset;
    if (this.ackTimer) return;
    this.ackTimer = true;
    this.setTimer(() => this.#flushAcks(), this.ackInterval);
  }

  #flushAcks() {
    this.ackTimer = false;
    const pending = this.unacked;
    this.unacked = {};
    for (const [stream, offset] of Object.entries(pending)) {
      // A closed socket drops them: the node committed the position it had when the socket closed.
      this.ack(stream, offset);
    }
  }

  /** The URL of the next connection attempt (token, channels, cursor and epoch as query parameters). */
  connectionURL(token) {
    const url = new URL(this.url, globalThis.location?.href ?? undefined);
    if (this.transport === "sse") {
      // The same node, the same parameters: ws(s)://host/v1/ws becomes http(s)://host/v1/sse.
      url.protocol = url.protocol === "wss:" ? "https:" : url.protocol === "ws:" ? "http:" : url.protocol;
      url.pathname = url.pathname.replace(/\/v1\/ws$/, "/v1/sse");
    }
    if (token) url.searchParams.set("token", token);
    if (this.channels.length > 0) url.searchParams.set("channels", this.channels.join(","));
    if (this.epoch && Object.keys(this.positions).length > 0) {
      url.searchParams.set("cursor", cursorText(this.positions));
      url.searchParams.set("epoch", this.epoch);
    }
    return url.toString();
  }

  #send(frame) {
    if (this.transport === "sse" || !this.socket || this.socket.readyState !== 1) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /** A token function is asked before every attempt, so a reconnect never presents a stale token. */
  async #token() {
    if (this.options.anonymous === true) return "";
    const source = this.options.token;
    return typeof source === "string" ? source : await source();
  }

  /** One attempt; `fallbackToken`: the same attempt again over an event stream, with its token. */
  async #connect(fallbackToken = null) {
    if (this.stopped) return;
    const transport = fallbackToken !== null || this.options.transport === "sse" ? "sse" : "websocket";
    if (transport !== this.transport) {
      this.transport = transport;
      this.#emit("transport", { transport });
    }
    this.#setState(this.attempt === 0 && !this.epoch ? "connecting" : "reconnecting");
    let token = fallbackToken;
    try {
      if (token === null) token = await this.#token();
    } catch (error) {
      this.#emit("error", { code: "token", message: String(error) });
      return this.#retry("resume");
    }
    if (this.stopped) return;
    this.token = token;
    this.#loadCursor(token);
    if (this.transport === "sse") return this.#connectEventStream(token);
    let socket;
    try {
      socket = new this.WebSocket(this.connectionURL(token));
    } catch (error) {
      this.#emit("error", { code: "transport", message: String(error) });
      if (this.#mayFallBack()) return this.#connect(token);
      return this.#retry("resume");
    }
    this.socket = socket;
    let opened = false;
    socket.onopen = () => { opened = true; };
    socket.onmessage = (event) => {
      opened = true;
      this.#frame(event.data, socket);
    };
    socket.onclose = (event) => {
      this.#dropHistories(socket);
      if (this.socket !== socket) return;
      this.socket = null;
      // Never opened: no WebSocket gets through here; the event stream may.
      if (!opened && !this.stopped && this.#mayFallBack()) return this.#connect(token);
      const action = closeAction(event.code);
      this.#emit("close", { code: event.code, reason: event.reason, action });
      if (!this.stopped) this.#retry(action);
    };
    socket.onerror = () => this.#emit("error", { code: "transport", message: "the WebSocket failed" });
  }

  /** Whether an attempt whose WebSocket failed may try an event stream (allowed, and available). */
  #mayFallBack() {
    return (this.options.transport ?? "auto") === "auto" && typeof this.EventSource === "function";
  }

  /**
   * One event stream. The client reconnects itself, as over a WebSocket (a fresh token, the cursor in
   * the URL, jittered backoff), rather than letting EventSource retry the old URL every few seconds.
   */
  #connectEventStream(token) {
    let source;
    try {
      source = new this.EventSource(this.connectionURL(token));
    } catch (error) {
      this.#emit("error", { code: "transport", message: String(error) });
      return this.#retry("resume");
    }
    this.socket = source;
    const end = (code, reason) => {
      if (this.socket !== source) return;
      this.socket = null;
      source.close();
      const action = closeAction(code);
      this.#emit("close", { code, reason, action });
      if (!this.stopped) this.#retry(action);
    };
    source.onmessage = (event) => this.#frame(event.data);
    // The server's last event: the close code and reason a WebSocket close frame would carry.
    source.addEventListener("close", (event) => {
      let close = {};
      try {
        close = JSON.parse(event.data);
      } catch {
        // Not Herald's close event: treat it as a dropped stream.
      }
      end(typeof close.code === "number" ? close.code : 1006, typeof close.reason === "string" ? close.reason : "");
    });
    source.onerror = () => {
      if (this.socket !== source) return;
      this.#emit("error", { code: "transport", message: "the event stream failed" });
      end(1006, "");
    };
  }

  #retry(action) {
    if (action === "refresh-token" && typeof this.options.token === "string") {
      // A fixed token cannot be refreshed: the app has to connect again with a new one.
      this.#emit("error", { code: "token-expired", message: "the token expired; connect again with a new token" });
      action = "stop";
    }
    const keepGoing = action === "resume" || action === "refresh-token" ||
      (action === "stop" && this.options.reconnectAfterStop === true);
    if (!keepGoing || this.stopped) {
      this.stopped = true;
      this.#setState("closed");
      return;
    }
    this.#setState("reconnecting");
    const delay = backoffDelay(this.attempt, { ...this.backoff, random: this.random });
    this.attempt += 1;
    // After 4009 the token function is asked again like before any attempt; a string token cannot be
    // refreshed, so the server will refuse it (401) and the app must reconnect with a new one.
    this.setTimer(() => this.#connect(), delay);
  }

  #loadCursor(token) {
    const identity = tokenIdentity(token);
    const key = this.options.storageKey ?? `herald:${new URL(this.url, globalThis.location?.href ?? undefined).host}:${identity.user}:${identity.device}`;
    if (key === this.storageKey) return;
    this.storageKey = key;
    const saved = this.store.load(key);
    if (saved) {
      this.epoch = saved.epoch;
      this.positions = { ...saved.positions };
    } else {
      this.epoch = null;
      this.positions = {};
    }
  }

  /**
   * With a token function, asks it for a new token shortly before the current one's `exp` and hands it
   * to the node in a `refresh`: the connection stays open past the old `exp` (no 4009, no reconnect).
   * A function that returns no later `exp` ends the refreshing; the node then closes with 4009.
   */
  #scheduleRefresh(socket) {
    // An event stream cannot send a refresh: it ends with 4009 and reconnects with a fresh token.
    if (this.transport === "sse" || typeof this.options.token !== "function") return;
    const expiry = tokenExpiry(this.token);
    if (expiry === null) return;
    const remaining = expiry - Date.now();
    this.setTimer(async () => {
      if (this.socket !== socket || this.stopped) return;
      let fresh;
      try {
        fresh = await this.#token();
      } catch (error) {
        return this.#emit("error", { code: "token", message: String(error) });
      }
      const next = tokenExpiry(fresh);
      if (this.socket !== socket || next === null || next <= expiry) return;
      this.token = fresh;
      this.#send({ type: "refresh", token: fresh });
    }, Math.max(0, remaining - refreshLead(remaining)));
  }

  #frame(text, socket) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    switch (frame.type) {
      case "welcome":
        this.attempt = 0;
        // Acks of an earlier socket are not this one's to send.
        this.unacked = {};
        this.epoch = frame.epoch;
        // Recovered: the cursor's positions (the replay follows). Not recovered, or no cursor: live
        // from the node's positions.
        this.positions = { ...this.positions, ...frame.positions };
        if (frame.recovered === false) {
          this.positions = { ...frame.positions };
          this.#emit("resync", { reason: frame.reason });
        }
        this.#save();
        this.#setState("open");
        this.#emit("welcome", frame);
        this.#scheduleRefresh(socket);
        break;
      case "refreshed":
        this.#emit("refreshed", { expiresAt: frame.expires_at });
        this.#scheduleRefresh(socket);
        break;
      case "message": {
        const last = this.positions[frame.stream];
        // The server never repeats a message; this guards against a stale socket all the same.
        if (last !== undefined && frame.offset <= last) return;
        this.positions[frame.stream] = frame.offset;
        this.#save();
        this.#scheduleAck(frame.stream, frame.offset);
        const detail = { stream: frame.stream, offset: frame.offset, id: frame.id, data: frame.data, encoding: frame.encoding };
        if (frame.user !== undefined) detail.user = frame.user;
        this.#emit("message", detail);
        this.#emit(`message:${frame.stream}`, detail);
        break;
      }
      case "history": {
        const pending = this.histories.get(frame.id);
        if (!pending) return;
        this.histories.delete(frame.id);
        const messages = (frame.messages ?? []).map((m) => {
          const detail = { stream: m.stream, offset: m.offset, id: m.id, data: m.data, encoding: m.encoding };
          if (m.user !== undefined) detail.user = m.user;
          return detail;
        });
        pending.resolve({
          stream: frame.stream, messages, earliest: frame.earliest, end: frame.end, next: frame.next ?? null,
          expired: frame.expired === true, cut: frame.cut ?? null, limit: frame.limit ?? null,
        });
        break;
      }
      case "published":
        this.#emit("published", { id: frame.id, stream: frame.stream, offset: frame.offset });
        break;
      case "error":
        if (frame.id !== undefined && this.histories.has(frame.id)) {
          const pending = this.histories.get(frame.id);
          this.histories.delete(frame.id);
          pending.reject(Object.assign(new Error(frame.message ?? frame.code), { code: frame.code }));
          return;
        }
        // With `id`: about the publish sent with that id.
        this.#emit("error", frame.id === undefined ? { code: frame.code, message: frame.message } : { code: frame.code, message: frame.message, id: frame.id });
        break;
    }
  }

  #save() {
    if (this.storageKey && this.epoch) this.store.save(this.storageKey, this.epoch, this.positions);
  }

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.#emit("state", { state });
  }

  #emit(type, detail) {
    // CustomEvent is global in browsers and Node 19+; Node 18 has Event only.
    const event = typeof CustomEvent === "function" ? new CustomEvent(type, { detail }) : Object.assign(new Event(type), { detail });
    this.dispatchEvent(event);
  }
}

/** Connects to Herald: `connect("wss://…/v1/ws", { token, channels })`. */
export function connect(url, options) {
  return new HeraldConnection(url, options).open();
}
