// Unit tests of web/wsnode.js with node's test runner: a scripted socket and
// manual timers stand in for the browser; no network, no browser.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

// Node 18 (Debian 12) has no global CustomEvent; browsers always do.
globalThis.CustomEvent ??= class CustomEvent extends Event {
  constructor(type, init) {
    super(type, init);
    this.detail = init?.detail ?? null;
  }
};

// web/wsnode.js is an ES module for browsers, in a folder with no
// package.json: Node 18 would load it as CommonJS (Node 20.19+ detects the
// syntax). Imported from its source text, it is an ES module everywhere.
const asModule = (text) => "data:text/javascript;charset=utf-8," + encodeURIComponent(text);
const tokens = readFileSync(new URL("../../web/tokens.js", import.meta.url), "utf8");
// a data: module cannot resolve "./tokens.js": hand it tokens.js the same way
const source = readFileSync(new URL("../../web/wsnode.js", import.meta.url), "utf8").replace(
  '"./tokens.js"',
  JSON.stringify(asModule(tokens)),
);
const { WsnodeClient, WsnodeError, backoffDelay, closeKind } = await import(
  "data:text/javascript;charset=utf-8," + encodeURIComponent(source)
);

// A WebSocket whose server side the test plays.
class ScriptedSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closed = null;
    ScriptedSocket.all.push(this);
  }
  send(text) {
    if (this.closed) throw new Error("socket closed");
    this.sent.push(JSON.parse(text));
  }
  close(code, reason) {
    this.closed = { code, reason };
  }
  // ---- server side
  frame(obj) {
    this.onmessage({ data: JSON.stringify(obj) });
  }
  hello(node = "n1", user = "alice") {
    this.frame({ op: "hello", node, user, sid: `${node}-1` });
  }
  ack(cmd) {
    this.frame({ op: "ack", id: cmd.id });
  }
  drop(code = 1006) {
    this.closed = { code };
    this.onclose({ code, reason: "" });
  }
}

// Timers the test fires by hand.
function manualTimers() {
  const timers = new Map();
  let next = 1;
  return {
    setTimeout: (fn, ms) => {
      timers.set(next, { fn, ms });
      return next++;
    },
    clearTimeout: (id) => timers.delete(id),
    pending: () => [...timers.values()],
    fire(filter = () => true) {
      for (const [id, t] of [...timers]) {
        if (filter(t)) {
          timers.delete(id);
          t.fn();
        }
      }
    },
  };
}

function client(extra = {}) {
  ScriptedSocket.all = [];
  const timers = manualTimers();
  const c = new WsnodeClient({
    url: "ws://example.test/ws",
    user: "alice",
    WebSocket: ScriptedSocket,
    setTimeout: timers.setTimeout,
    clearTimeout: timers.clearTimeout,
    random: () => 0.5, // no jitter
    ...extra,
  });
  return { c, timers, sock: () => ScriptedSocket.all.at(-1) };
}

const flush = () => new Promise((r) => setImmediate(r));

test("backoff grows exponentially, is capped, and jitters within bounds", () => {
  const opts = { initialMs: 100, maxMs: 5000, factor: 2, jitter: 0.5 };
  const mid = (a) => backoffDelay(a, opts, () => 0.5);
  assert.deepEqual([0, 1, 2, 3, 4].map(mid), [100, 200, 400, 800, 1600]);
  assert.equal(mid(10), 5000);
  assert.equal(mid(100), 5000);
  assert.equal(backoffDelay(3, opts, () => 0), 400); // -50%
  assert.equal(backoffDelay(3, opts, () => 1), 1200); // +50%
  assert.equal(backoffDelay(20, opts, () => 1), 5000); // never above the cap
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(2, opts);
    assert.ok(d >= 200 && d <= 600, `${d}`);
  }
  assert.equal(backoffDelay(0, {}, () => 0.5), 250); // defaults
});

test("the endpoint carries the user or the token, encoded", () => {
  const { c, sock } = client({ user: "bob@example.com" });
  c.connect();
  assert.equal(sock().url, "ws://example.test/ws?user=bob%40example.com");
  const t = client({ user: null, token: "a.b+c" });
  t.c.connect();
  assert.equal(t.sock().url, "ws://example.test/ws?token=a.b%2Bc");
});

test("subscribe resolves on ack; messages reach that channel's handlers only", async () => {
  const { c, sock } = client();
  c.connect();
  sock().hello();
  assert.equal(c.state, "open");
  assert.equal(c.node, "n1");
  const got = [];
  const p = c.subscribe("room:1", (m) => got.push(m.data));
  const sub = sock().sent.at(-1);
  assert.equal(sub.op, "sub");
  assert.equal(sub.ch, "room:1");
  sock().ack(sub);
  await p;
  sock().frame({ op: "msg", ch: "room:1", from: "bob", data: 1 });
  sock().frame({ op: "msg", ch: "room:12", from: "bob", data: 2 });
  assert.deepEqual(got, [1]);
});

test("err replies reject with the error code", async () => {
  const { c, sock } = client();
  c.connect();
  sock().hello();
  const p = c.publish("news:1", { x: 1 });
  const cmd = sock().sent.at(-1);
  assert.deepEqual(cmd, { op: "pub", ch: "news:1", data: { x: 1 }, id: cmd.id });
  sock().frame({ op: "err", id: cmd.id, code: "forbidden", msg: "no" });
  await assert.rejects(p, (e) => e instanceof WsnodeError && e.code === "forbidden");
  // a failed subscribe is forgotten (not resubscribed later)
  const s = c.subscribe("bad channel");
  sock().frame({ op: "err", id: sock().sent.at(-1).id, code: "bad_channel", msg: "x" });
  await assert.rejects(s, { code: "bad_channel" });
  assert.deepEqual(c.channels, []);
});

test("commands issued before hello wait for it, then go out in order", async () => {
  const { c, sock } = client();
  c.connect();
  const a = c.send("bob", "one");
  const b = c.publish("room:1", "two");
  assert.equal(sock().sent.length, 0);
  sock().hello();
  const [s1, s2] = sock().sent;
  assert.equal(s1.op, "send");
  assert.equal(s2.op, "pub");
  sock().ack(s2);
  sock().ack(s1);
  await Promise.all([a, b]);
});

test("after a drop it reconnects with backoff and resubscribes every channel", async () => {
  const { c, timers, sock } = client({ backoff: { initialMs: 100, maxMs: 1000 } });
  const states = [];
  c.addEventListener("state", (e) => states.push(e.detail));
  c.connect();
  sock().hello("n1");
  const subs = ["room:1", "room:2", "danmaku:lobby"].map((ch) => {
    const p = c.subscribe(ch, () => {});
    sock().ack(sock().sent.at(-1));
    return p;
  });
  await Promise.all(subs);

  const inflight = c.publish("room:1", "lost?");
  sock().drop(1006);
  await assert.rejects(inflight, { code: "disconnected" });
  assert.equal(c.state, "reconnecting");
  assert.deepEqual(timers.pending().map((t) => t.ms), [100]);

  // the first retry fails as well: the next delay doubles
  timers.fire();
  sock().drop(1006);
  assert.deepEqual(timers.pending().map((t) => t.ms), [200]);

  timers.fire();
  assert.equal(ScriptedSocket.all.length, 3);
  sock().hello("n2");
  assert.equal(c.state, "open");
  assert.equal(c.node, "n2");
  assert.equal(c.reconnects, 1);
  const resubscribed = sock().sent.filter((f) => f.op === "sub").map((f) => f.ch).sort();
  assert.deepEqual(resubscribed, ["danmaku:lobby", "room:1", "room:2"]);
  assert.deepEqual(states, ["connecting", "open", "reconnecting", "open"]);

  // a success resets the backoff
  sock().drop(1001);
  assert.deepEqual(timers.pending().map((t) => t.ms), [100]);
});

test("close() stops for good: no reconnect, waiting commands fail", async () => {
  const { c, timers, sock } = client();
  c.connect();
  sock().hello();
  const p = c.ping();
  c.close();
  await assert.rejects(p, { code: "closed" });
  assert.equal(c.state, "closed");
  assert.deepEqual(sock().closed, { code: 1000, reason: "bye" });
  assert.equal(timers.pending().length, 0);
  await assert.rejects(c.publish("a", 1), { code: "closed" });
});

test("requests time out when the server never answers", async () => {
  const { c, timers, sock } = client({ requestTimeoutMs: 5000 });
  c.connect();
  sock().hello();
  const p = c.send("bob", 1);
  timers.fire((t) => t.ms === 5000);
  await assert.rejects(p, { code: "timeout" });
});

test("dm events and unknown frames", async () => {
  const { c, sock } = client();
  const dms = [];
  c.addEventListener("dm", (e) => dms.push(e.detail));
  c.connect();
  sock().hello();
  sock().frame({ op: "dm", from: "bob", data: { t: 1 } });
  sock().frame({ op: "presence", whatever: true }); // ignored
  sock().onmessage({ data: "not json" }); // ignored
  assert.deepEqual(dms, [{ op: "dm", from: "bob", data: { t: 1 } }]);
  await flush();
});

test("the command queue is bounded while disconnected", async () => {
  const { c } = client({ maxQueued: 2 });
  c.connect();
  const a = c.publish("x", 1);
  const b = c.publish("x", 2);
  await assert.rejects(c.publish("x", 3), { code: "queue_full" });
  c.close();
  await assert.rejects(a, { code: "closed" });
  await assert.rejects(b, { code: "closed" });
});

test("history channels: resubscribes with since, reports recovery, drops repeats, follows resync", async () => {
  const { c, timers, sock } = client({ backoff: { initialMs: 100 } });
  const recoveries = [];
  c.addEventListener("recovery", (e) => recoveries.push(e.detail));
  const got = [];
  c.connect();
  sock().hello("n1");
  const p = c.subscribe("room:1", (m) => got.push(m.off));
  const sub = sock().sent.at(-1);
  assert.equal(sub.since, undefined);
  sock().frame({ op: "ack", id: sub.id, ep: "e1", off: 4 });
  await p;
  assert.deepEqual(c.position("room:1"), { ep: "e1", off: 4 });
  sock().frame({ op: "msg", ch: "room:1", off: 5, data: 1 });
  sock().frame({ op: "msg", ch: "room:1", off: 5, data: 1 }); // a repeat: dropped
  assert.deepEqual(got, [5]);

  sock().drop(1006);
  timers.fire();
  sock().hello("n2");
  const again = sock().sent.find((f) => f.op === "sub");
  assert.deepEqual(again.since, { ep: "e1", off: 5 });
  sock().frame({ op: "ack", id: again.id, ep: "e1", off: 7, recovered: true });
  sock().frame({ op: "msg", ch: "room:1", off: 6, data: 1 });
  sock().frame({ op: "msg", ch: "room:1", off: 7, data: 1 });
  assert.deepEqual(got, [5, 6, 7]);
  assert.deepEqual(recoveries, [{ ch: "room:1", recovered: true, count: 2 }]);

  // resync: subscribe again from the position, on the same socket
  sock().frame({ op: "resync", ch: "room:1" });
  const third = sock().sent.at(-1);
  assert.equal(third.op, "sub");
  assert.deepEqual(third.since, { ep: "e1", off: 7 });
  sock().frame({ op: "ack", id: third.id, ep: "e2", off: 3, recovered: false });
  assert.deepEqual(recoveries.at(-1), { ch: "room:1", recovered: false, count: 0 });
  assert.deepEqual(c.position("room:1"), { ep: "e2", off: 3 });

  // publish with a key, and a history read
  const pub = c.publish("room:1", "x", { key: "k-1" });
  assert.equal(sock().sent.at(-1).key, "k-1");
  sock().frame({ op: "ack", id: sock().sent.at(-1).id, off: 4 });
  assert.equal((await pub).off, 4);
  const h = c.history("room:1", { limit: 2 });
  const hc = sock().sent.at(-1);
  assert.equal(hc.op, "history");
  sock().frame({ op: "history", id: hc.id, ch: "room:1", ep: "e2", off: 4, pubs: [] });
  assert.equal((await h).off, 4);
  await flush();
});

// A JWT-shaped token with these claims (the client never verifies one).
function jwt(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256" })}.${b64(claims)}.sig`;
}

test("presence pages, join/leave events and private channels' subscription tokens", async () => {
  const { c, timers, sock } = client({ backoff: { initialMs: 100 } });
  const events = [];
  c.addEventListener("join", (e) => events.push(["join", e.detail.user]));
  c.addEventListener("leave", (e) => events.push(["leave", e.detail.user]));
  c.connect();
  sock().hello();
  const p = c.presence("room:1", { limit: 2, cursor: "bob" });
  const cmd = sock().sent.at(-1);
  assert.deepEqual({ ...cmd, id: 0 }, { op: "presence", ch: "room:1", limit: 2, cursor: "bob", id: 0 });
  sock().frame({ op: "presence", id: cmd.id, ch: "room:1", count: 3, users: ["carol"] });
  assert.deepEqual((await p).users, ["carol"]);
  sock().frame({ op: "join", ch: "room:1", user: "dave" });
  sock().frame({ op: "leave", ch: "room:1", user: "dave" });
  assert.deepEqual(events, [["join", "dave"], ["leave", "dave"]]);

  const s = c.subscribe("private:9", () => {}, { token: "SUBTOKEN" });
  const sub = sock().sent.at(-1);
  assert.equal(sub.token, "SUBTOKEN");
  sock().ack(sub);
  await s;
  sock().drop(1006);
  timers.fire();
  sock().hello();
  assert.equal(sock().sent.find((f) => f.op === "sub" && f.ch === "private:9").token, "SUBTOKEN");
  await flush();
});

test("refreshes the token before exp, and after a 4001 close reconnects with a new one", async () => {
  const now = 1_000_000_000_000;
  let made = 0;
  const { c, timers, sock } = client({
    user: null,
    token: jwt({ sub: "alice", exp: now / 1000 + 120 }),
    now: () => now,
    backoff: { initialMs: 100 },
    refreshToken: async () => jwt({ sub: "alice", exp: now / 1000 + 3600 + ++made }),
  });
  const refreshed = [];
  c.addEventListener("refresh", (e) => refreshed.push(e.detail.exp));
  c.connect();
  sock().hello();
  // 30 s before exp
  const timer = timers.pending().find((t) => t.ms === 90000);
  assert.ok(timer, JSON.stringify(timers.pending()));
  timers.fire((t) => t === timer);
  await flush();
  const cmd = sock().sent.at(-1);
  assert.equal(cmd.op, "refresh");
  sock().frame({ op: "ack", id: cmd.id, exp: now / 1000 + 3601 });
  await flush();
  assert.deepEqual(refreshed, [now / 1000 + 3601]);
  assert.equal(c.token, cmd.token);
  // the server closes with 4001: the next connection uses a fresh token
  sock().drop(4001);
  await flush();
  await flush();
  timers.fire((t) => t.ms === 100);
  assert.ok(sock().url.includes(encodeURIComponent(c.token)));
  assert.equal(made, 2);
  c.close();
});

test("rpc resolves with the answer's data, matched by id; data goes only when given", async () => {
  const { c, sock } = client();
  c.connect();
  sock().hello();
  const a = c.rpc("get_profile", { id: 7 });
  const first = sock().sent.at(-1);
  assert.deepEqual(first, { op: "rpc", method: "get_profile", data: { id: 7 }, id: first.id });
  const b = c.rpc("now");
  const second = sock().sent.at(-1);
  assert.deepEqual(second, { op: "rpc", method: "now", id: second.id });
  assert.notEqual(first.id, second.id);
  // answers are matched by id, whatever their order; an unknown id is ignored
  sock().frame({ op: "rpc", id: 999, data: "stray" });
  sock().frame({ op: "rpc", id: second.id }); // no data: null
  sock().frame({ op: "rpc", id: first.id, data: { name: "Ann" } });
  assert.deepEqual(await a, { name: "Ann" });
  assert.equal(await b, null);
  // falsy answers come back as they are
  const z = c.rpc("zero", 0);
  assert.equal(sock().sent.at(-1).data, 0);
  sock().frame({ op: "rpc", id: sock().sent.at(-1).id, data: 0 });
  assert.equal(await z, 0);
});

test("rpc rejects with the err code: unavailable, the application's, unknown_op", async () => {
  const { c, sock } = client();
  c.connect();
  sock().hello();
  const replies = [
    ["unavailable", "hook failed: timeout"],
    ["not_found", "no such profile"],
    ["unknown_op", undefined],
  ];
  for (const [code, msg] of replies) {
    const p = c.rpc("get_profile", { id: 1 });
    sock().frame({ op: "err", id: sock().sent.at(-1).id, code, ...(msg ? { msg } : {}) });
    await assert.rejects(
      p,
      (e) => e instanceof WsnodeError && e.code === code && e.message === (msg ?? code),
    );
  }
});

test("rpc while disconnected behaves like the other commands", async () => {
  const { c, timers, sock } = client({ backoff: { initialMs: 100 }, requestTimeoutMs: 5000 });
  c.connect();
  const early = c.rpc("early", 1); // before hello: queued
  assert.equal(sock().sent.length, 0);
  sock().hello();
  const cmd = sock().sent.at(-1);
  assert.equal(cmd.method, "early");
  sock().frame({ op: "rpc", id: cmd.id, data: "ok" });
  assert.equal(await early, "ok");
  // in flight when the connection drops: disconnected (it may have run)
  const lost = c.rpc("lost");
  sock().drop(1006);
  await assert.rejects(lost, { code: "disconnected" });
  // while reconnecting: queued, sent after the next hello
  const later = c.rpc("later", [1, 2]);
  timers.fire((t) => t.ms === 100);
  sock().hello("n2");
  const again = sock().sent.find((f) => f.op === "rpc");
  assert.deepEqual(again.data, [1, 2]);
  sock().frame({ op: "rpc", id: again.id, data: 3 });
  assert.equal(await later, 3);
  // no answer: timeout
  const slow = c.rpc("slow");
  timers.fire((t) => t.ms === 5000);
  await assert.rejects(slow, { code: "timeout" });
  // after close(): closed
  c.close();
  await assert.rejects(c.rpc("x"), { code: "closed" });
});

test("subscribe passes data to the sub (and again when resubscribing)", async () => {
  const { c, timers, sock } = client({ backoff: { initialMs: 100 } });
  c.connect();
  sock().hello();
  const s = c.subscribe("chat:1", () => {}, { data: { invite: "x" } });
  const sub = sock().sent.at(-1);
  assert.deepEqual(sub, { op: "sub", ch: "chat:1", data: { invite: "x" }, id: sub.id });
  sock().ack(sub);
  await s;
  const n = c.subscribe("chat:2", () => {}, { data: null }); // null is a value
  assert.equal(sock().sent.at(-1).data, null);
  sock().ack(sock().sent.at(-1));
  await n;
  sock().drop(1006);
  timers.fire();
  sock().hello();
  const again = sock().sent.filter((f) => f.op === "sub");
  assert.deepEqual(again.find((f) => f.ch === "chat:1").data, { invite: "x" });
  assert.equal(again.find((f) => f.ch === "chat:2").data, null);
  // a refused sub is forgotten with its data
  const bad = c.subscribe("chat:3", () => {}, { data: 1 });
  sock().frame({ op: "err", id: sock().sent.at(-1).id, code: "forbidden", msg: "no" });
  await assert.rejects(bad, { code: "forbidden" });
  assert.deepEqual(c.channels.sort(), ["chat:1", "chat:2"]);
});

test("subscribed: a server-side channel is tracked, and recovered after a reconnect", async () => {
  const { c, timers, sock } = client({ backoff: { initialMs: 100 } });
  const events = [];
  for (const type of ["subscribed", "unsubscribed", "recovery"])
    c.addEventListener(type, (e) => events.push([type, e.detail]));
  c.connect();
  sock().hello();
  sock().frame({ op: "subscribed", ch: "room:1", ep: "e1", off: 4 });
  sock().frame({ op: "subscribed", ch: "notify:ann" }); // no history
  assert.deepEqual(c.channels, ["room:1", "notify:ann"]);
  assert.deepEqual(c.position("room:1"), { ep: "e1", off: 4 });
  assert.equal(c.position("notify:ann"), null);
  assert.deepEqual(events, [
    ["subscribed", { op: "subscribed", ch: "room:1", ep: "e1", off: 4 }],
    ["subscribed", { op: "subscribed", ch: "notify:ann" }],
  ]);
  // a handler joins without a sub: the server holds the subscription
  const got = [];
  const sent = sock().sent.length;
  await c.subscribe("room:1", (m) => got.push(m.off));
  assert.equal(sock().sent.length, sent);
  sock().frame({ op: "msg", ch: "room:1", off: 5, data: 1 });
  assert.deepEqual(got, [5]);
  assert.deepEqual(c.position("room:1"), { ep: "e1", off: 5 });

  // after a reconnect the client does not sub server-side channels itself;
  // it pings to learn which ones the server gives back
  sock().drop(1006);
  timers.fire();
  sock().hello("n2");
  assert.deepEqual(sock().sent.filter((f) => f.op === "sub"), []);
  const probe = sock().sent.at(-1);
  assert.equal(probe.op, "ping");
  // the server subscribes it again: the client recovers from its position
  sock().frame({ op: "subscribed", ch: "room:1", ep: "e1", off: 8 });
  const rec = sock().sent.at(-1);
  assert.deepEqual(
    { ...rec, id: 0 },
    { op: "sub", ch: "room:1", since: { ep: "e1", off: 5 }, id: 0 },
  );
  // live messages before the ack are dropped: the replay carries them
  sock().frame({ op: "msg", ch: "room:1", off: 8, data: 1 });
  assert.deepEqual(got, [5]);
  sock().frame({ op: "ack", id: rec.id, ep: "e1", off: 8, recovered: true });
  for (const off of [6, 7, 8, 9]) sock().frame({ op: "msg", ch: "room:1", off, data: 1 });
  assert.deepEqual(got, [5, 6, 7, 8, 9]);
  assert.deepEqual(events.at(-1), ["recovery", { ch: "room:1", recovered: true, count: 3 }]);
  // a repeat on the same socket changes nothing
  sock().frame({ op: "subscribed", ch: "room:1", ep: "e1", off: 9 });
  assert.equal(sock().sent.at(-1), rec);
  assert.deepEqual(c.position("room:1"), { ep: "e1", off: 9 });
  // a channel without history comes back without a sub either
  sock().frame({ op: "subscribed", ch: "notify:ann" });
  assert.equal(sock().sent.at(-1), rec);

  // unsubscribed: dropped, position and handlers too; unknown channels are ignored
  sock().frame({ op: "unsubscribed", ch: "room:1" });
  sock().frame({ op: "unsubscribed", ch: "nope:1" });
  assert.deepEqual(events.at(-1), ["unsubscribed", { op: "unsubscribed", ch: "room:1" }]);
  assert.equal(events.filter(([t]) => t === "unsubscribed").length, 1);
  assert.deepEqual(c.channels, ["notify:ann"]);
  assert.equal(c.position("room:1"), null);
  sock().frame({ op: "msg", ch: "room:1", off: 10, data: 1 });
  assert.deepEqual(got, [5, 6, 7, 8, 9]);
  // and it is not resubscribed after the next reconnect
  sock().drop(1006);
  timers.fire();
  sock().hello("n3");
  const ping = sock().sent.at(-1);
  assert.deepEqual(sock().sent, [{ op: "ping", id: ping.id }]);
  // notify:ann was not given back before the pong (the server API's, not
  // the connect hook's): the session that held it is gone
  sock().frame({ op: "pong", id: ping.id });
  await flush();
  assert.deepEqual(events.at(-1), ["unsubscribed", { op: "unsubscribed", ch: "notify:ann" }]);
  assert.deepEqual(c.channels, []);
  sock().drop(1006);
  timers.fire();
  sock().hello("n1");
  assert.deepEqual(sock().sent, []); // nothing left to ask about
  await flush();
});

test("subscribed for a channel the client subscribed itself changes nothing", async () => {
  const { c, timers, sock } = client({ backoff: { initialMs: 100 } });
  c.connect();
  sock().hello();
  const p = c.subscribe("room:2", () => {});
  const sub = sock().sent.at(-1);
  sock().frame({ op: "subscribed", ch: "room:2", ep: "e1", off: 3 }); // before our ack
  sock().frame({ op: "ack", id: sub.id, ep: "e1", off: 3 });
  await p;
  // a reconnect: the client's own channel is resubscribed with since, once
  sock().drop(1006);
  timers.fire();
  sock().hello();
  sock().frame({ op: "subscribed", ch: "room:2", ep: "e1", off: 3 });
  const subs = sock().sent.filter((f) => f.op === "sub");
  assert.equal(subs.length, 1);
  assert.deepEqual(subs[0].since, { ep: "e1", off: 3 });
  // unsubscribe() sends unsub and forgets it
  const u = c.unsubscribe("room:2");
  assert.equal(sock().sent.at(-1).op, "unsub");
  sock().ack(sock().sent.at(-1));
  await u;
  assert.deepEqual(c.channels, []);
});

test("a close with 4003 (the application disconnected us) waits the longest backoff", async () => {
  const { c, timers, sock } = client({ backoff: { initialMs: 100, maxMs: 8000 } });
  const closes = [];
  c.addEventListener("close", (e) => closes.push([e.detail.code, e.detail.kind]));
  c.connect();
  sock().hello();
  sock().drop(4003);
  assert.deepEqual(closes, [[4003, "application"]]);
  assert.equal(c.state, "reconnecting");
  assert.deepEqual(timers.pending().map((t) => t.ms), [8000]);
  timers.fire();
  sock().hello();
  sock().drop(1006); // a success resets it
  assert.deepEqual(timers.pending().map((t) => t.ms), [100]);
  c.close();
});

test("closeKind names why a connection closed, for the application's messages", () => {
  const kinds = [4003, 4001, 1001, 1008, 1002, 1007, 1009, 1013, 1000, 1006, 4999].map(closeKind);
  assert.deepEqual(kinds, ["application", "token", "draining", "policy", "policy", "policy",
    "policy", "slow", "normal", "network", "network"]);
});

test("batch adds batch=1 to the endpoint, after the user or the token; without it nothing changes", () => {
  const { c, sock } = client({ batch: true });
  c.connect();
  assert.equal(sock().url, "ws://example.test/ws?user=alice&batch=1");
  const t = client({ user: null, token: "a.b", batch: true });
  t.c.connect();
  assert.equal(t.sock().url, "ws://example.test/ws?token=a.b&batch=1");
  const q = client({ url: "ws://example.test/ws?x=1", user: null, batch: true });
  q.c.connect();
  assert.equal(q.sock().url, "ws://example.test/ws?x=1&batch=1");
  const plain = client();
  plain.c.connect();
  assert.equal(plain.sock().url, "ws://example.test/ws?user=alice");
});

test("a merged frame is handled as its elements one by one, in order, offsets tracked", async () => {
  const { c, timers, sock } = client({ batch: true, backoff: { initialMs: 100 } });
  const got = [];
  const events = [];
  c.addEventListener("msg", (e) => events.push(e.detail.off));
  c.connect();
  sock().hello();
  const p = c.subscribe("danmaku:1", (m) => got.push([m.off, m.data]));
  sock().frame({ op: "ack", id: sock().sent.at(-1).id, ep: "e1", off: 4 });
  await p;
  sock().frame([
    { op: "msg", ch: "danmaku:1", from: "bob", data: "a", off: 5 },
    { op: "msg", ch: "danmaku:1", from: "bob", data: "b", off: 6 },
    { op: "msg", ch: "danmaku:1", from: "carol", data: "c", off: 7 },
  ]);
  assert.deepEqual(got, [[5, "a"], [6, "b"], [7, "c"]]);
  assert.deepEqual(events, [5, 6, 7]);
  assert.deepEqual(c.position("danmaku:1"), { ep: "e1", off: 7 });
  // an element already seen is dropped alone, as it would be in its own frame
  sock().frame([
    { op: "msg", ch: "danmaku:1", data: "c", off: 7 },
    { op: "msg", ch: "danmaku:1", data: "d", off: 8 },
  ]);
  assert.deepEqual(got.map((g) => g[0]), [5, 6, 7, 8]);
  // a window of one comes as the plain frame
  sock().frame({ op: "msg", ch: "danmaku:1", data: "e", off: 9 });
  // hello, ack, 2 arrays, 1 single; the repeat counts (it was received)
  assert.deepEqual(c.stats, { frames: 5, msgs: 6, merged: 2, bytes: c.stats.bytes, malformed: 0 });

  // recovery resumes from the last element's offset
  sock().drop(1006);
  timers.fire();
  sock().hello("n2");
  assert.deepEqual(sock().sent.find((f) => f.op === "sub").since, { ep: "e1", off: 9 });
  assert.equal(sock().url, "ws://example.test/ws?user=alice&batch=1");
  await flush();
});

test("merged frames: arrays of non-objects are ignored whole and counted; bytes are UTF-8", async () => {
  const { c, sock } = client({ batch: true });
  const got = [];
  c.connect();
  sock().hello();
  const p = c.subscribe("danmaku:1", (m) => got.push(m.data));
  sock().ack(sock().sent.at(-1));
  await p;
  const before = { ...c.stats };
  for (const bad of [[{ op: "msg", ch: "danmaku:1", data: 1 }, 2], [null], [[{ op: "msg", ch: "danmaku:1" }]], 7])
    sock().frame(bad);
  sock().onmessage({ data: "not json" });
  assert.deepEqual(got, []);
  assert.equal(c.stats.malformed - before.malformed, 5);
  assert.equal(c.stats.merged, before.merged);
  assert.equal(c.stats.msgs, before.msgs);

  const text = JSON.stringify([{ op: "msg", ch: "danmaku:1", data: "é😀" }]);
  const bytes = c.stats.bytes;
  sock().onmessage({ data: text });
  assert.equal(c.stats.bytes - bytes, Buffer.byteLength(text));
  assert.deepEqual(got, ["é😀"]);
});

test("merged frames: a handler that throws does not cost the elements after it", async () => {
  const { c, sock } = client({ batch: true });
  const got = [];
  c.connect();
  sock().hello();
  const p = c.subscribe("danmaku:1", (m) => {
    got.push(m.data);
    if (m.data === 1) throw new Error("app bug");
  });
  sock().ack(sock().sent.at(-1));
  await p;
  assert.throws(() => sock().frame([1, 2, 3].map((data) => ({ op: "msg", ch: "danmaku:1", data }))),
    /app bug/);
  assert.deepEqual(got, [1, 2, 3]);
});
