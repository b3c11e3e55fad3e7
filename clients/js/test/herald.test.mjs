// Unit tests of the backoff, close-code and cursor logic: node --test clients/js/test/
import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, closeAction, cursorText, CursorStore, HeraldConnection, tokenIdentity } from "../herald.js";

/** A WebSocket double: records the URL, lets the test play the server. */
class FakeSocket {
  static opened = [];
  constructor(url) {
    this.url = url;
    this.readyState = 1;
    this.sent = [];
    FakeSocket.opened.push(this);
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  close(code = 1000, reason = "") { this.serverClose(code, reason); }
  serverFrame(frame) { this.onmessage?.({ data: JSON.stringify(frame) }); }
  serverClose(code, reason = "") { this.readyState = 3; this.onclose?.({ code, reason }); }
}

function token(sub, device) {
  const payload = Buffer.from(JSON.stringify({ sub, device, exp: 9999999999 })).toString("base64url");
  return `eyJhbGciOiJIUzI1NiJ9.${payload}.sig`;
}

function harness(options = {}) {
  FakeSocket.opened = [];
  const timers = [];
  const storage = new Map();
  const connection = new HeraldConnection("ws://herald.test/v1/ws", {
    token: token("alice", "phone"),
    WebSocket: FakeSocket,
    setTimeout: (fn, ms) => timers.push({ fn, ms }),
    random: () => 0.5,
    // The tests below count timers; automatic acks have their own test.
    ackInterval: 0,
    storage: { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, v), removeItem: (k) => storage.delete(k) },
    ...options,
  });
  const events = [];
  for (const type of ["state", "welcome", "message", "resync", "error", "close", "published"]) {
    connection.addEventListener(type, (e) => events.push({ type, ...e.detail }));
  }
  return { connection, timers, storage, events };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

test("close codes: resume, refresh the token, or stop", () => {
  for (const code of [1012, 1013, 4008, 1006, 1001, 1011]) assert.equal(closeAction(code), "resume", String(code));
  assert.equal(closeAction(4009), "refresh-token");
  for (const code of [4001, 4003, 1000, 1002, 1007, 1008, 1009]) assert.equal(closeAction(code), "stop", String(code));
});

test("backoff: full jitter below an exponential ceiling, capped", () => {
  assert.equal(backoffDelay(0, { base: 500, random: () => 0.999 }), 499);
  assert.equal(backoffDelay(3, { base: 500, random: () => 0.5 }), 2000);
  assert.equal(backoffDelay(20, { base: 500, cap: 30000, random: () => 0.999 }), 29970);
  assert.equal(backoffDelay(5, { random: () => 0 }), 0);
  // Spread: many clients at one attempt do not all pick the same delay.
  const delays = new Set(Array.from({ length: 200 }, () => backoffDelay(4)));
  assert.ok(delays.size > 150);
  for (const delay of delays) assert.ok(delay >= 0 && delay < 8000);
});

test("cursor text is sorted STREAM:OFFSET pairs", () => {
  assert.equal(cursorText({ u: 1842, "*": 78, "c:news": 13 }), "*:78,c:news:13,u:1842");
  assert.equal(cursorText({}), "");
});

test("token identity reads sub and device without verifying", () => {
  assert.deepEqual(tokenIdentity(token("alice", "phone")), { user: "alice", device: "phone" });
  assert.deepEqual(tokenIdentity("garbage"), { user: "", device: "" });
});

test("cursor store keeps one cursor per key and ignores junk", () => {
  const store = new CursorStore(null);
  store.save("a", "cluster.12", { u: 3 });
  assert.deepEqual(store.load("a"), { epoch: "cluster.12", positions: { u: 3 } });
  assert.equal(store.load("b"), null);
  const junk = new CursorStore({ getItem: () => "{not json", setItem() {}, removeItem() {} });
  assert.equal(junk.load("a"), null);
});

test("a connection keeps its cursor and resumes with it after 1012", async () => {
  const { connection, timers, storage, events } = harness({ channels: ["news"] });
  connection.open();
  await tick();
  const first = FakeSocket.opened[0];
  assert.match(first.url, /token=/);
  assert.match(first.url, /channels=news/);
  assert.doesNotMatch(first.url, /cursor=/, "no cursor before the first welcome");

  first.serverFrame({ type: "welcome", node: "n1", session: "s", epoch: "c.4", positions: { u: 10, "*": 5, "c:news": -1 } });
  first.serverFrame({ type: "message", stream: "u", offset: 12, data: { a: 1 } });
  first.serverFrame({ type: "message", stream: "u", offset: 12, data: { a: 1 } }); // repeated: dropped
  first.serverFrame({ type: "message", stream: "c:news", offset: 3, data: "x" });
  assert.deepEqual(events.filter((e) => e.type === "message").map((e) => [e.stream, e.offset]), [["u", 12], ["c:news", 3]]);
  const saved = JSON.parse([...storage.values()][0]);
  assert.deepEqual(saved, { epoch: "c.4", positions: { u: 12, "*": 5, "c:news": 3 } });
  assert.ok([...storage.keys()][0].includes("alice:phone"), "the cursor is stored per user and device");

  first.serverClose(1012, "draining");
  assert.equal(connection.state, "reconnecting");
  assert.equal(timers.length, 1);
  assert.ok(timers[0].ms >= 0 && timers[0].ms < 500, "first retry within the base");
  timers[0].fn();
  await tick();
  const second = FakeSocket.opened[1];
  const url = new URL(second.url);
  assert.equal(url.searchParams.get("cursor"), "*:5,c:news:3,u:12");
  assert.equal(url.searchParams.get("epoch"), "c.4");
  second.serverFrame({ type: "welcome", node: "n2", session: "t", epoch: "c.4", positions: { u: 12, "*": 5, "c:news": 3 }, recovered: true });
  assert.equal(connection.state, "open");
  assert.equal(connection.attempt, 0, "a welcome resets the backoff");
});

test("a new page load resumes from the stored cursor", async () => {
  const { connection, storage } = harness();
  storage.set("herald:herald.test:alice:phone", JSON.stringify({ epoch: "c.4", positions: { u: 40 } }));
  connection.open();
  await tick();
  assert.equal(new URL(FakeSocket.opened[0].url).searchParams.get("cursor"), "u:40");
});

test("recovered:false: a resync event and the server's positions", async () => {
  const { connection, events, storage } = harness();
  storage.set("herald:herald.test:alice:phone", JSON.stringify({ epoch: "old.4", positions: { u: 40 } }));
  connection.open();
  await tick();
  FakeSocket.opened[0].serverFrame({ type: "welcome", epoch: "new.4", positions: { u: 2, "*": 0 }, recovered: false, reason: "epoch" });
  assert.deepEqual(events.find((e) => e.type === "resync"), { type: "resync", reason: "epoch" });
  assert.deepEqual(connection.positions, { u: 2, "*": 0 });
});

test("4001 and 4003 stop; reconnectAfterStop overrides", async () => {
  for (const code of [4001, 4003]) {
    const { connection, timers } = harness();
    connection.open();
    await tick();
    FakeSocket.opened[0].serverClose(code);
    assert.equal(connection.state, "closed");
    assert.equal(timers.length, 0);
  }
  const { connection, timers } = harness({ reconnectAfterStop: true });
  connection.open();
  await tick();
  FakeSocket.opened[0].serverClose(4001);
  assert.equal(timers.length, 1);
});

test("4009 asks the token function again before reconnecting; a fixed token stops", async () => {
  let calls = 0;
  const { connection, timers } = harness({ token: async () => token("alice", `t${++calls}`) });
  connection.open();
  await tick();
  FakeSocket.opened[0].serverClose(4009);
  timers[0].fn();
  await tick();
  assert.equal(calls, 2);
  assert.match(FakeSocket.opened[1].url, new RegExp(encodeURIComponent(token("alice", "t2")).slice(0, 20)));

  const fixed = harness();
  fixed.connection.open();
  await tick();
  FakeSocket.opened[0].serverClose(4009);
  assert.equal(fixed.connection.state, "closed");
  assert.ok(fixed.events.some((e) => e.type === "error" && e.code === "token-expired"));
});

test("backoff grows while the node stays away", async () => {
  const { connection, timers } = harness({ random: () => 0.999 });
  connection.open();
  await tick();
  for (let attempt = 0; attempt < 6; attempt++) {
    FakeSocket.opened.at(-1).serverClose(1006);
    timers.at(-1).fn();
    await tick();
  }
  assert.deepEqual(timers.map((t) => t.ms), [499, 999, 1998, 3996, 7992, 15984]);
});

test("publish, subscribe with an offset, ack", async () => {
  const { connection } = harness();
  connection.open();
  await tick();
  const socket = FakeSocket.opened[0];
  assert.ok(connection.publish({ draft: "hi" }, { sync: true }));
  assert.ok(connection.subscribe("news", { offset: 12 }));
  assert.ok(connection.ack("u", 3));
  assert.deepEqual(socket.sent, [
    { type: "publish", data: { draft: "hi" }, sync: true },
    { type: "subscribe", channel: "news", offset: 12 },
    { type: "ack", stream: "u", offset: 3 },
  ]);
});

test("acks: the last offset of each stream, at most once per interval, none after a new welcome", async () => {
  const { connection, timers } = harness({ ackInterval: 1000 });
  connection.open();
  await tick();
  const socket = FakeSocket.opened[0];
  socket.serverFrame({ type: "welcome", node: "n1", session: "s", epoch: "e", positions: { u: 10, "*": 5 } });
  socket.serverFrame({ type: "message", stream: "u", offset: 11, data: 1 });
  socket.serverFrame({ type: "message", stream: "u", offset: 14, data: 2 });
  socket.serverFrame({ type: "message", stream: "*", offset: 6, data: 3 });
  assert.equal(timers.length, 1, "one timer for the three messages");
  assert.equal(timers[0].ms, 1000);
  assert.deepEqual(socket.sent, [], "nothing acked before the interval");
  timers[0].fn();
  assert.deepEqual(socket.sent, [{ type: "ack", stream: "u", offset: 14 }, { type: "ack", stream: "*", offset: 6 }]);
  socket.serverFrame({ type: "message", stream: "u", offset: 15, data: 4 });
  assert.equal(timers.length, 2, "the next message starts the next interval");
  socket.serverFrame({ type: "welcome", node: "n1", session: "t", epoch: "e", positions: { u: 15, "*": 6 } });
  timers[1].fn();
  assert.equal(socket.sent.length, 2, "acks of before a welcome are not sent after it");
});

test("no automatic acks with ackInterval 0", async () => {
  const { connection, timers } = harness({ ackInterval: 0 });
  connection.open();
  await tick();
  const socket = FakeSocket.opened[0];
  socket.serverFrame({ type: "welcome", node: "n1", session: "s", epoch: "e", positions: { u: 10 } });
  socket.serverFrame({ type: "message", stream: "u", offset: 11, data: 1 });
  assert.equal(timers.length, 0);
  assert.deepEqual(socket.sent, []);
});

test("a publish with an id is answered: published, or an error naming the id", async () => {
  const { connection, events } = harness();
  connection.open();
  await tick();
  const socket = FakeSocket.opened[0];
  socket.serverFrame({ type: "welcome", node: "n", session: "s", epoch: "e", positions: { u: 1 } });
  assert.ok(connection.publish({ draft: "hi" }, { sync: true, id: "d-1" }));
  assert.ok(connection.publish("plain"));
  assert.deepEqual(socket.sent.slice(-2), [
    { type: "publish", data: { draft: "hi" }, sync: true, id: "d-1" },
    { type: "publish", data: "plain", sync: false },
  ]);
  socket.serverFrame({ type: "error", code: "publish-failed", message: "send it again with the same id", id: "d-1" });
  socket.serverFrame({ type: "published", id: "d-1", stream: "u", offset: 7 });
  socket.serverFrame({ type: "error", code: "bad-request", message: "m" });
  assert.deepEqual(events.filter((e) => e.type === "published" || e.type === "error"), [
    { type: "error", code: "publish-failed", message: "send it again with the same id", id: "d-1" },
    { type: "published", id: "d-1", stream: "u", offset: 7 },
    { type: "error", code: "bad-request", message: "m" },
  ]);
  assert.equal(connection.positions.u, 1, "published does not move the cursor: the copy excludes this session");
});

/** An EventSource double: records the URL, lets the test play the server's event stream. */
class FakeEventSource {
  static opened = [];
  constructor(url) {
    this.url = url;
    this.readyState = 1;
    this.listeners = {};
    this.closed = false;
    FakeEventSource.opened.push(this);
  }
  addEventListener(type, fn) { (this.listeners[type] ??= []).push(fn); }
  close() { this.closed = true; this.readyState = 2; }
  serverFrame(frame) { this.onmessage?.({ data: JSON.stringify(frame) }); }
  serverClose(code, reason = "") { for (const fn of this.listeners.close ?? []) fn({ data: JSON.stringify({ type: "close", code, reason }) }); }
  fail() { this.readyState = 2; this.onerror?.({}); }
}

test("a WebSocket that fails before it opens: the same attempt opens /v1/sse with the same parameters", async () => {
  FakeEventSource.opened = [];
  let asked = 0;
  const { connection, timers, events } = harness({
    channels: ["news"], EventSource: FakeEventSource, token: () => { asked += 1; return token("alice", "phone"); },
  });
  const transports = [];
  connection.addEventListener("transport", (e) => transports.push(e.detail.transport));
  connection.open();
  await tick();
  FakeSocket.opened[0].serverClose(1006); // never opened: a proxy that drops upgrades
  await tick();
  assert.equal(timers.length, 0, "no backoff before the fallback");
  const source = FakeEventSource.opened[0];
  const url = new URL(source.url);
  assert.equal(url.protocol, "http:");
  assert.equal(url.pathname, "/v1/sse");
  assert.equal(url.searchParams.get("channels"), "news");
  assert.equal(url.searchParams.get("token"), new URL(FakeSocket.opened[0].url).searchParams.get("token"));
  assert.equal(asked, 1, "the fallback is the same attempt: the token function is not asked again");
  assert.deepEqual(transports, ["sse"]);

  source.serverFrame({ type: "welcome", node: "n1", session: "s", epoch: "c.4", positions: { u: 10, "*": 5, "c:news": -1 } });
  source.serverFrame({ type: "message", stream: "u", offset: 11, data: { a: 1 } });
  assert.equal(connection.state, "open");
  assert.deepEqual(events.filter((e) => e.type === "message").map((e) => e.offset), [11]);
  assert.equal(connection.publish({ x: 1 }), false, "an event stream only receives");
  assert.equal(connection.ack("u", 11), false);

  // The server's close event carries the close code: 4008 resumes, from the cursor, WebSocket first.
  source.serverClose(4008, "slow consumer");
  assert.ok(source.closed, "the client ends the EventSource itself: no native retry of the old URL");
  assert.deepEqual(events.filter((e) => e.type === "close").map((e) => [e.code, e.action]), [[4008, "resume"]]);
  assert.equal(timers.length, 1);
  timers[0].fn();
  await tick();
  assert.equal(FakeSocket.opened.length, 2, "each attempt tries a WebSocket first");
  FakeSocket.opened[1].serverClose(1006);
  await tick();
  const again = new URL(FakeEventSource.opened[1].url);
  assert.equal(again.searchParams.get("cursor"), "*:5,c:news:-1,u:11");
  assert.equal(again.searchParams.get("epoch"), "c.4");

  // 4003 over the event stream stops, as over a WebSocket.
  FakeEventSource.opened[1].serverClose(4003, "kicked");
  assert.equal(connection.state, "closed");
  assert.equal(timers.length, 1);
});

test("transport: a failed event stream is retried with backoff; websocket never falls back; sse never tries a WebSocket", async () => {
  FakeEventSource.opened = [];
  const auto = harness({ EventSource: FakeEventSource });
  auto.connection.open();
  await tick();
  FakeSocket.opened[0].serverClose(1006);
  await tick();
  FakeEventSource.opened[0].fail();
  assert.equal(auto.connection.state, "reconnecting");
  assert.equal(auto.timers.length, 1);

  FakeEventSource.opened = [];
  const only = harness({ EventSource: FakeEventSource, transport: "websocket" });
  only.connection.open();
  await tick();
  FakeSocket.opened[0].serverClose(1006);
  await tick();
  assert.equal(FakeEventSource.opened.length, 0);
  assert.equal(only.timers.length, 1);

  const sse = harness({ EventSource: FakeEventSource, transport: "sse" });
  sse.connection.open();
  await tick();
  assert.equal(FakeSocket.opened.length, 0);
  assert.equal(FakeEventSource.opened.length, 1);
  assert.match(FakeEventSource.opened[0].url, /^http:\/\/herald\.test\/v1\/sse\?/);
});

test("a token function is asked again shortly before exp, and the new token goes to the node in a refresh", async () => {
  const now = Date.now();
  const expiring = (sub, seconds) => {
    const payload = Buffer.from(JSON.stringify({ sub, exp: (now + seconds * 1000) / 1000 })).toString("base64url");
    return `eyJhbGciOiJIUzI1NiJ9.${payload}.sig`;
  };
  let calls = 0;
  const { connection, timers, events } = harness({ token: async () => expiring("alice", 10 * ++calls) });
  connection.addEventListener("refreshed", (e) => events.push({ type: "refreshed", ...e.detail }));
  connection.open();
  await tick();
  const socket = FakeSocket.opened[0];
  socket.serverFrame({ type: "welcome", node: "n", session: "s", epoch: "e", positions: { u: 1 } });
  assert.equal(timers.length, 1);
  assert.ok(timers[0].ms > 4000 && timers[0].ms <= 5000, `refresh scheduled after ${timers[0].ms} ms of a 10 s token`);
  await timers[0].fn();
  assert.deepEqual(socket.sent.at(-1), { type: "refresh", token: expiring("alice", 20) });
  socket.serverFrame({ type: "refreshed", expires_at: now + 20000 });
  assert.deepEqual(events.at(-1), { type: "refreshed", expiresAt: now + 20000 });
  assert.equal(timers.length, 2, "the next refresh is scheduled from the new token");
  assert.equal(FakeSocket.opened.length, 1, "no reconnect");
  // A fixed token is never refreshed in-band.
  const fixed = harness();
  fixed.connection.open();
  await tick();
  FakeSocket.opened[0].serverFrame({ type: "welcome", node: "n", session: "s", epoch: "e", positions: {} });
  assert.equal(fixed.timers.length, 0);
});

test("anonymous: no token in the URL; publish into a channel sends the channel and no sync", async () => {
  const { connection } = harness({ token: undefined, anonymous: true, channels: ["video:1"] });
  connection.open();
  await tick();
  const socket = FakeSocket.opened[0];
  assert.equal(new URL(socket.url).searchParams.get("token"), null);
  assert.equal(new URL(socket.url).searchParams.get("channels"), "video:1");
  assert.ok(connection.publish({ comment: "hi" }, { channel: "video:1", id: "c-1" }));
  assert.deepEqual(socket.sent.at(-1), { type: "publish", channel: "video:1", data: { comment: "hi" }, id: "c-1" });
  assert.throws(() => new HeraldConnection("ws://x/v1/ws", {}), /needs a token/);
});

test("a channel message's publisher reaches the app as user", async () => {
  const { connection, events } = harness({ token: undefined, anonymous: true, channels: ["video:1"] });
  connection.open();
  await tick();
  const socket = FakeSocket.opened[0];
  socket.serverFrame({ type: "welcome", node: "n", session: "s", epoch: "e", positions: { "c:video:1": 4 } });
  socket.serverFrame({ type: "message", stream: "c:video:1", offset: 5, id: "c-1", user: "alice", data: { comment: "hi" } });
  assert.deepEqual(events.filter((e) => e.type === "message"), [
    { type: "message", stream: "c:video:1", offset: 5, id: "c-1", data: { comment: "hi" }, encoding: undefined, user: "alice" },
  ]);
});

test("history: the frame carries its own id; the answer resolves it, an error with its id rejects it, and neither moves the cursor", async () => {
  const { connection, events } = harness({ token: undefined, anonymous: true, channels: ["video:1"] });
  connection.open();
  await tick();
  const socket = FakeSocket.opened[0];
  socket.serverFrame({ type: "welcome", node: "n", session: "s", epoch: "e", positions: { "c:video:1": 9 } });
  const page = connection.history("c:video:1", { limit: 2, before: 9 });
  const asked = socket.sent.at(-1);
  assert.equal(asked.type, "history");
  assert.deepEqual({ ...asked, id: undefined }, { type: "history", id: undefined, stream: "c:video:1", limit: 2, before: 9 });
  const refused = connection.history("c:secret");
  const second = socket.sent.at(-1);
  assert.notEqual(second.id, asked.id, "each request has its own id");
  socket.serverFrame({ type: "error", code: "channel-not-allowed", id: second.id, message: "this connection may not read c:secret" });
  await assert.rejects(refused, (error) => error.code === "channel-not-allowed" && /c:secret/.test(error.message));
  socket.serverFrame({
    type: "history", id: asked.id, stream: "c:video:1", partition: 1, earliest: 0, end: 9, next: 7, expired: false,
    messages: [
      { type: "message", stream: "c:video:1", offset: 7, id: "c-7", user: "ana", data: { comment: "first" } },
      { type: "message", stream: "c:video:1", offset: 8, id: "c-8", data: { comment: "second" } },
    ],
  });
  const answer = await page;
  assert.deepEqual(answer.messages.map((m) => [m.offset, m.user, m.data.comment]), [[7, "ana", "first"], [8, undefined, "second"]]);
  assert.equal(answer.next, 7);
  assert.equal(answer.cut, null);
  assert.equal(events.filter((e) => e.type === "error").length, 0, "a history refusal is the promise's, not an error event");
  assert.equal(connection.positions["c:video:1"], 9, "history does not move the cursor");
});

test("history: rejected as not-connected without an open WebSocket, and as closed when the socket drops first", async () => {
  const { connection } = harness({ token: undefined, anonymous: true, channels: ["video:1"] });
  await assert.rejects(connection.history("c:video:1"), (error) => error.code === "not-connected");
  connection.open();
  await tick();
  const socket = FakeSocket.opened[0];
  const page = connection.history("c:video:1");
  socket.serverClose(1012, "restarting");
  await assert.rejects(page, (error) => error.code === "closed");
});
