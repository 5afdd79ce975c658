// wsnode.js: a small browser client for wsnode's protocol v1, v1.1 and v1.2.
// Plain ES module, no dependencies, no build step. See docs/client.md.
//
//   import { WsnodeClient } from "/wsnode.js";
//   const c = new WsnodeClient({ user: "alice" });          // dev mode
//   const c = new WsnodeClient({ token: jwtFromYourServer }); // with a secret
//   c.addEventListener("state", () => console.log(c.state, c.node));
//   c.addEventListener("dm", (e) => console.log(e.detail.from, e.detail.data));
//   c.connect();
//   await c.subscribe("room:1", (msg) => console.log(msg.from, msg.data));
//   await c.publish("room:1", { text: "hi" });
//   await c.send("bob", "psst");
//   c.addEventListener("recovery", (e) => console.log(e.detail)); // {ch, recovered, count}
//   await c.subscribe("private:42", onMsg, { token: subscriptionToken }); // private channel
//   const { count, users, cursor } = await c.presence("room:1", { limit: 100 });
//   c.addEventListener("join", (e) => console.log(e.detail.ch, e.detail.user)); // and "leave"
//   new WsnodeClient({ token, refreshToken: async () => fetchNewToken() }); // before exp
//   const profile = await c.rpc("get_profile", { id: 7 }); // answered by the app's rpc hook
//   c.addEventListener("subscribed", (e) => c.subscribe(e.detail.ch, onMsg)); // the server's
//   new WsnodeClient({ user: "alice", batch: true }); // merged frames (v1.2); c.stats counts
//
// In a namespace with history the client remembers each channel's stream
// position (ep, off) and, after every reconnect and on `resync`,
// subscribes again with `since`: the messages it missed are replayed, in
// order, once. The "recovery" event says whether that worked
// (`recovered: false`: the gap was too old or the epoch changed; reload
// the channel's state, e.g. with history()). Channels the server
// subscribed the client to (`subscribed` frames: the connect hook's
// channels, /api/subscribe) are tracked the same way; the server
// subscribes them again after a reconnect, and the client then recovers
// them from its position.

import { refreshDelay, tokenExp } from "./tokens.js";

/** An `err` reply (or a local failure) as an exception with a `code`. */
export class WsnodeError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "WsnodeError";
    this.code = code;
  }
}

/** Reconnect delay for `attempt` (0-based): exponential, capped, with jitter. */
export function backoffDelay(attempt, opts = {}, random = Math.random) {
  const initial = opts.initialMs ?? 250;
  const max = opts.maxMs ?? 10000;
  const factor = opts.factor ?? 2;
  const jitter = opts.jitter ?? 0.5; // +/- this fraction of the delay
  const base = Math.min(max, initial * Math.pow(factor, attempt));
  const spread = base * jitter * (2 * random() - 1);
  return Math.max(0, Math.round(Math.min(max, base + spread)));
}

/** UTF-8 length of `s` without encoding it (stats only). */
function utf8Length(s) {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c < 0xdc00 && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2; // a surrogate pair: 4 bytes for 2 code units
      i++;
    } else n += 2;
  }
  return n;
}

/** The default endpoint: /ws on the page's own host. */
function defaultUrl() {
  const loc = globalThis.location;
  if (!loc) return "ws://127.0.0.1:8080/ws";
  return `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/ws`;
}

/**
 * Why a connection closed, from its close code (docs/protocol.md "Close
 * codes"): "application" (4003: the application disconnected this user,
 * /api/disconnect or a hook; the client waits longer before it comes
 * back), "token" (4001: expired or refused token), "draining" (1001: the
 * node is stopping; reconnect through the balancer), "policy" (1008, 1007,
 * 1002, 1009: the client broke a rule), "slow" (1013: it could not keep up),
 * "normal" (1000), else "network".
 */
export function closeKind(code) {
  switch (code) {
    case 4003: return "application";
    case 4001: return "token";
    case 1001: return "draining";
    case 1002: case 1007: case 1008: case 1009: return "policy";
    case 1013: return "slow";
    case 1000: return "normal";
    default: return "network";
  }
}

/**
 * One logical connection to wsnode that survives reconnects.
 *
 * Events (EventTarget): "state" (detail: state), "open" (detail: hello),
 * "close" (detail: {code, reason, kind}, kind from closeKind(code)),
 * "msg" and "dm" (detail: the frame),
 * "recovery" (detail: {ch, recovered, count}) after a resubscription with
 * `since`, "join" and "leave" (detail: {ch, user}) in namespaces with
 * join_leave, "refresh" (detail: {exp}) after the token was renewed,
 * "subscribed" (detail: {ch, ep, off}) and "unsubscribed" (detail: {ch})
 * when the server subscribed the client to a channel or took it away.
 *
 * `opts.refreshToken`: an async function of the application that returns a
 * new connection token (same user); the client calls it before the
 * current token's `exp` (30 s before, or half the time left) and sends
 * `refresh`, and after a close with 4001 before it reconnects.
 * `opts.batch`: connect with `batch=1` (protocol v1.2 merged frames): the
 * server may then send several `msg` frames of a channel as one array; the
 * client still emits one message per element, in order.
 * `stats`: {frames, msgs, merged, bytes, malformed} received since
 * construction, across reconnects.
 * States: "idle", "connecting", "open", "reconnecting", "closed".
 */
export class WsnodeClient extends EventTarget {
  constructor(opts = {}) {
    super();
    this.url = opts.url || defaultUrl();
    this.user = opts.user || null;
    this.token = opts.token || null;
    this.backoff = opts.backoff || {};
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 10000;
    this.maxQueued = opts.maxQueued ?? 1000;
    this.WebSocket = opts.WebSocket || globalThis.WebSocket;
    this.setTimeout = opts.setTimeout || globalThis.setTimeout.bind(globalThis);
    this.clearTimeout = opts.clearTimeout || globalThis.clearTimeout.bind(globalThis);
    this.random = opts.random || Math.random;
    this.refreshToken = opts.refreshToken || null;
    this.now = opts.now || Date.now;
    this.batch = opts.batch === true;

    this.state = "idle";
    this.node = null; // from hello
    this.sid = null;
    this.reconnects = 0; // successful reconnects since connect()
    this._ws = null;
    this._attempt = 0;
    this._retryTimer = null;
    this._nextId = 1;
    this._pending = new Map(); // id -> {resolve, reject, timer}
    this._queue = []; // commands waiting for the connection
    this._subs = new Map(); // channel -> Set(handler)
    this._pos = new Map(); // channel -> {ep, off}: its stream position (history channels)
    this._subArgs = new Map(); // channel -> {token, data} of its sub (kept for resubscribing)
    this._serverSubs = new Set(); // channels the server subscribed (not resubscribed at hello)
    this._awaiting = new Set(); // server-side channels not yet subscribed again on this socket
    this._recovering = new Set(); // channels whose sub with `since` is not acknowledged yet
    this._refreshTimer = null;
    this._everOpen = false;
    // frames: text frames received (an array counts once); msgs: `msg`
    // frames, each element of an array counted; merged: arrays received;
    // bytes: UTF-8 bytes of the frames' text (no WebSocket framing);
    // malformed: frames ignored (not a JSON object or an array of objects)
    this.stats = { frames: 0, msgs: 0, merged: 0, bytes: 0, malformed: 0 };
  }

  /** Opens the connection (and keeps it open until close()). */
  connect() {
    if (this.state === "open" || this.state === "connecting") return;
    this._everOpen = false;
    this.reconnects = 0;
    this._attempt = 0;
    this._open("connecting");
  }

  /** Closes for good: no reconnect; queued and pending commands fail. */
  close() {
    this._setState("closed");
    if (this._retryTimer !== null) this.clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (this._refreshTimer !== null) this.clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    if (this._ws) {
      const ws = this._ws;
      this._ws = null;
      try { ws.close(1000, "bye"); } catch (_) { /* already closed */ }
    }
    this._failAll(new WsnodeError("closed", "client closed"));
  }

  /**
   * Subscribes `handler(msg)` to `ch`; resolves on the server's ack.
   * `opts.token`: a subscription token for a private channel; `opts.data`:
   * any JSON value for the application's subscribe hook (both kept for
   * resubscribing after reconnects). A channel already subscribed (by
   * this client, or by the server) only gets the handler.
   */
  subscribe(ch, handler, opts = {}) {
    let set = this._subs.get(ch);
    const first = !set;
    if (first) {
      set = new Set();
      this._subs.set(ch, set);
    }
    if (handler) set.add(handler);
    if (!first) return Promise.resolve();
    const args = {};
    if (opts.token) args.token = opts.token;
    if (opts.data !== undefined) args.data = opts.data;
    this._subArgs.set(ch, args);
    return this._request({ op: "sub", ch, ...args }).then(
      (ack) => {
        this._onSubAck(ch, ack, null);
        return ack;
      },
      (e) => {
        this._forget(ch);
        throw e;
      },
    );
  }

  /** Removes `handler` (or every handler) from `ch`; unsubscribes when none is left. */
  unsubscribe(ch, handler) {
    const set = this._subs.get(ch);
    if (!set) return Promise.resolve();
    if (handler) set.delete(handler);
    else set.clear();
    if (set.size > 0) return Promise.resolve();
    this._forget(ch);
    return this._request({ op: "unsub", ch });
  }

  /**
   * Publishes `data` (any JSON value) to `ch`; resolves on ack (with `off`
   * in a history channel). `opts.key` makes a retry safe: a repeat of the
   * key is acknowledged with the first one's offset, not published again.
   */
  publish(ch, data, opts = {}) {
    const cmd = { op: "pub", ch, data };
    if (opts.key !== undefined) cmd.key = opts.key;
    return this._request(cmd);
  }

  /** A history channel's newest messages: resolves with {ep, off, pubs}. */
  history(ch, opts = {}) {
    const cmd = { op: "history", ch };
    if (opts.limit !== undefined) cmd.limit = opts.limit;
    if (opts.since) cmd.since = opts.since;
    return this._request(cmd);
  }

  /**
   * Who is in `ch` (a namespace with presence): resolves with {count,
   * users, cursor}; pass `cursor` back for the next page; `limit: 0` gives
   * the count alone.
   */
  presence(ch, opts = {}) {
    const cmd = { op: "presence", ch };
    if (opts.limit !== undefined) cmd.limit = opts.limit;
    if (opts.cursor) cmd.cursor = opts.cursor;
    if (opts.token) cmd.token = opts.token;
    return this._request(cmd);
  }

  /** Replaces the connection token now (`refresh`); resolves with the ack ({exp}). */
  refresh(token) {
    return this._request({ op: "refresh", token }).then((ack) => {
      this.token = token;
      this._scheduleRefresh(ack.exp ?? tokenExp(token));
      this.dispatchEvent(new CustomEvent("refresh", { detail: { exp: ack.exp ?? null } }));
      return ack;
    });
  }

  /** The stream position {ep, off} of a history channel (null: none yet). */
  position(ch) {
    const p = this._pos.get(ch);
    return p ? { ep: p.ep, off: p.off } : null;
  }

  /**
   * Calls `method` of the application's rpc hook with `data` (any JSON
   * value); resolves with the answer's `data`, rejects with a WsnodeError
   * (`unavailable`: the hook failed; `unknown_op`: no rpc hook; or the
   * application's own code).
   */
  rpc(method, data) {
    const cmd = { op: "rpc", method };
    if (data !== undefined) cmd.data = data;
    return this._request(cmd).then((reply) => (reply.data === undefined ? null : reply.data));
  }

  /** Sends `data` to every session of `user`; resolves on ack. */
  send(user, data) {
    return this._request({ op: "send", to: user, data });
  }

  /** Round trip to the server; resolves with the time taken in ms. */
  ping() {
    const t0 = Date.now();
    return this._request({ op: "ping" }).then(() => Date.now() - t0);
  }

  /** Channels this client is subscribed to (resubscribed after reconnects). */
  get channels() {
    return [...this._subs.keys()];
  }

  // ---------------------------------------------------------------- internals

  _endpoint() {
    const q = [];
    if (this.token) q.push(`token=${encodeURIComponent(this.token)}`);
    else if (this.user) q.push(`user=${encodeURIComponent(this.user)}`);
    if (this.batch) q.push("batch=1");
    if (q.length === 0) return this.url;
    return `${this.url}${this.url.includes("?") ? "&" : "?"}${q.join("&")}`;
  }

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.dispatchEvent(new CustomEvent("state", { detail: s }));
  }

  _open(state) {
    this._setState(state);
    let ws;
    try {
      ws = new this.WebSocket(this._endpoint());
    } catch (e) {
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    ws.onmessage = (ev) => this._onData(ev.data);
    ws.onclose = (ev) => {
      if (this._ws !== ws) return; // an old socket
      this._ws = null;
      this.dispatchEvent(new CustomEvent("close", {
        detail: { code: ev.code, reason: ev.reason, kind: closeKind(ev.code) },
      }));
      // commands in flight may or may not have been handled: tell the caller
      for (const [id, p] of this._pending) {
        this.clearTimeout(p.timer);
        p.reject(new WsnodeError("disconnected", `connection closed (${ev.code})`));
      }
      this._pending.clear();
      if (this.state === "closed") return;
      // 4003: the application disconnected this client; come back slowly
      if (ev.code === 4003) this._attempt = Math.max(this._attempt, 30);
      if (ev.code === 4001 && this.refreshToken) {
        // the token expired: get a new one before reconnecting with it
        this._setState("reconnecting");
        Promise.resolve()
          .then(() => this.refreshToken())
          .then((t) => { if (t) this.token = t; }, () => {})
          .then(() => this._scheduleReconnect());
        return;
      }
      this._scheduleReconnect();
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  _scheduleReconnect() {
    this._setState("reconnecting");
    const delay = backoffDelay(this._attempt++, this.backoff, this.random);
    this._retryTimer = this.setTimeout(() => {
      this._retryTimer = null;
      if (this.state === "reconnecting") this._open("reconnecting");
    }, delay);
  }

  _onData(text) {
    const st = this.stats;
    st.frames++;
    if (typeof text === "string") st.bytes += utf8Length(text);
    let f;
    try {
      f = JSON.parse(text);
    } catch (_) {
      st.malformed++;
      return; // the server only sends JSON; ignore anything else
    }
    if (!Array.isArray(f)) {
      if (f === null || typeof f !== "object") {
        st.malformed++;
        return;
      }
      if (f.op === "msg") st.msgs++;
      this._onFrame(f);
      return;
    }
    // A merged frame (batch=1): checked whole first, so that a bad one
    // changes nothing rather than half of it.
    for (const e of f) {
      if (e === null || typeof e !== "object" || Array.isArray(e)) {
        st.malformed++;
        return;
      }
    }
    st.merged++;
    // A handler that throws must not cost the elements after it (alone,
    // each would have been its own onmessage); the first error still surfaces.
    let thrown = null;
    for (const e of f) {
      if (e.op === "msg") st.msgs++;
      try {
        this._onFrame(e);
      } catch (err) {
        thrown ??= { err };
      }
    }
    if (thrown) throw thrown.err;
  }

  _onFrame(f) {
    switch (f.op) {
      case "hello":
        this._onHello(f);
        return;
      case "ack":
      case "pong":
      case "history":
      case "presence":
      case "rpc":
      case "err": {
        const p = f.id !== undefined ? this._pending.get(f.id) : undefined;
        if (!p) return;
        this._pending.delete(f.id);
        this.clearTimeout(p.timer);
        if (f.op === "err") p.reject(new WsnodeError(f.code, f.msg));
        else p.resolve(f);
        return;
      }
      case "msg": {
        // before the ack of a sub with `since`, the replay that follows it
        // carries these again (a server-side subscription may send them early)
        if (f.off !== undefined && this._recovering.has(f.ch)) return;
        const pos = f.off !== undefined ? this._pos.get(f.ch) : undefined;
        if (pos) {
          if (f.off <= pos.off) return; // already seen (never expected; a safety net)
          pos.off = f.off;
        }
        const set = this._subs.get(f.ch);
        if (set) for (const h of set) h(f);
        this.dispatchEvent(new CustomEvent("msg", { detail: f }));
        return;
      }
      case "dm":
        this.dispatchEvent(new CustomEvent("dm", { detail: f }));
        return;
      case "join":
      case "leave":
        this.dispatchEvent(new CustomEvent(f.op, { detail: f }));
        return;
      case "resync": // the server could not keep this stream whole: recover it
        if (this._subs.has(f.ch)) this._resubscribe(f.ch);
        return;
      case "subscribed":
        this._onSubscribed(f);
        return;
      case "unsubscribed":
        if (!this._subs.has(f.ch)) return;
        this._forget(f.ch);
        this.dispatchEvent(new CustomEvent("unsubscribed", { detail: f }));
        return;
      default:
        return; // unknown ops are ignored (forward compatibility)
    }
  }

  _onHello(hello) {
    this.node = hello.node;
    this.sid = hello.sid;
    if (this._everOpen) this.reconnects++;
    this._everOpen = true;
    this._attempt = 0;
    this._setState("open");
    if (this.token && this.refreshToken && this._refreshTimer === null)
      this._scheduleRefresh(tokenExp(this.token));
    // resubscribe every channel (those whose first sub is still queued go
    // with the queue; the server's own come back with `subscribed`), then
    // flush what waited for the connection
    const queuedSubs = new Set(this._queue.filter((q) => q.cmd.op === "sub").map((q) => q.cmd.ch));
    this._awaiting = new Set(this._serverSubs);
    this._recovering.clear();
    for (const ch of this._subs.keys()) {
      if (!queuedSubs.has(ch) && !this._serverSubs.has(ch)) this._resubscribe(ch);
    }
    // The server answers in order, and its own subscriptions (the connect
    // hook's) come before the answer to anything sent after hello: a
    // server-side channel not back by the pong of this ping was the
    // server API's, and ended with the old session.
    if (this._awaiting.size > 0) {
      this._sendNow({ op: "ping", id: this._nextId++ }, {
        resolve: () => {
          for (const ch of [...this._awaiting]) {
            this._forget(ch);
            this.dispatchEvent(new CustomEvent("unsubscribed", { detail: { op: "unsubscribed", ch } }));
          }
        },
        reject: () => {}, // the next reconnect asks again
        timer: null,
      });
    }
    const queued = this._queue;
    this._queue = [];
    for (const q of queued) this._sendNow(q.cmd, q.promise);
    this.dispatchEvent(new CustomEvent("open", { detail: hello }));
  }

  // Subscribes `ch` again, from its position when it has one.
  _resubscribe(ch) {
    const pos = this._pos.get(ch);
    const since = pos ? { ep: pos.ep, off: pos.off } : null;
    const cmd = { op: "sub", ch, ...this._subArgs.get(ch), id: this._nextId++ };
    if (since) {
      cmd.since = since;
      this._recovering.add(ch);
    }
    this._sendNow(cmd, {
      resolve: (ack) => {
        this._recovering.delete(ch);
        this._onSubAck(ch, ack, since);
      },
      reject: () => this._recovering.delete(ch), // the next reconnect tries again
      timer: null,
    });
  }

  // The server subscribed this client to `f.ch` (the connect hook's
  // channels, /api/subscribe). New: track it like one of ours. Known from
  // before a reconnect: recover it from its position with a `sub` carrying
  // `since` (the session holds the channel already: no grant is needed).
  // Already subscribed on this socket: nothing changes.
  _onSubscribed(f) {
    const ch = f.ch;
    if (typeof ch !== "string") return;
    if (!this._subs.has(ch)) {
      this._subs.set(ch, new Set());
      this._serverSubs.add(ch);
      if (f.ep !== undefined) this._pos.set(ch, { ep: f.ep, off: f.off });
    } else if (this._awaiting.delete(ch)) {
      if (this._pos.has(ch)) this._resubscribe(ch);
      else if (f.ep !== undefined) this._pos.set(ch, { ep: f.ep, off: f.off });
    }
    this.dispatchEvent(new CustomEvent("subscribed", { detail: f }));
  }

  // Drops everything the client keeps about `ch`.
  _forget(ch) {
    this._subs.delete(ch);
    this._pos.delete(ch);
    this._subArgs.delete(ch);
    this._serverSubs.delete(ch);
    this._awaiting.delete(ch);
    this._recovering.delete(ch);
  }

  // Asks the application for a new token before `exp` (seconds) and sends
  // it with `refresh`; a failure is retried a few seconds later (the server
  // closes with 4001 once the grace is over, and the client reconnects).
  _scheduleRefresh(exp) {
    if (this._refreshTimer !== null) this.clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    if (!this.refreshToken || exp === null || exp === undefined || this.state === "closed") return;
    this._refreshTimer = this.setTimeout(() => {
      this._refreshTimer = null;
      Promise.resolve()
        .then(() => this.refreshToken())
        .then((t) => (this.state === "open" ? this.refresh(t) : (this.token = t)))
        .catch(() => {
          if (this._refreshTimer === null && this.state !== "closed")
            this._refreshTimer = this.setTimeout(() => {
              this._refreshTimer = null;
              this._scheduleRefresh(exp);
            }, 5000);
        });
    }, refreshDelay(exp, this.now()));
  }

  _onSubAck(ch, ack, since) {
    if (!ack || ack.ep === undefined) return; // no history in this namespace
    if (!this._subs.has(ch)) return; // unsubscribed meanwhile
    const recovered = ack.recovered === true;
    // replayed messages follow the ack and move the position on
    this._pos.set(ch, { ep: ack.ep, off: since && recovered ? since.off : ack.off });
    if (since) {
      const count = recovered ? ack.off - since.off : 0;
      this.dispatchEvent(new CustomEvent("recovery", { detail: { ch, recovered, count } }));
    }
  }

  _request(cmd) {
    return new Promise((resolve, reject) => {
      const p = { resolve, reject, timer: null };
      if (this.state === "closed") {
        reject(new WsnodeError("closed", "client closed"));
        return;
      }
      if (this.state !== "open") {
        if (this._queue.length >= this.maxQueued) {
          reject(new WsnodeError("queue_full", "too many commands waiting for the connection"));
          return;
        }
        this._queue.push({ cmd, promise: p });
        return;
      }
      this._sendNow(cmd, p);
    });
  }

  _sendNow(cmd, p) {
    if (cmd.id === undefined) cmd.id = this._nextId++;
    if (p) {
      p.timer = this.setTimeout(() => {
        if (this._pending.delete(cmd.id)) p.reject(new WsnodeError("timeout", `no reply to ${cmd.op}`));
      }, this.requestTimeoutMs);
      this._pending.set(cmd.id, p);
    }
    try {
      this._ws.send(JSON.stringify(cmd));
    } catch (e) {
      if (p) {
        this._pending.delete(cmd.id);
        this.clearTimeout(p.timer);
        p.reject(new WsnodeError("disconnected", String(e)));
      }
    }
  }

  _failAll(err) {
    for (const [, p] of this._pending) {
      this.clearTimeout(p.timer);
      p.reject(err);
    }
    this._pending.clear();
    for (const q of this._queue) q.promise.reject(err);
    this._queue = [];
  }
}
