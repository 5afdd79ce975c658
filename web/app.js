// The demo page: chat rooms and direct messages, a danmaku (bullet comment)
// stage, and a diagnostics panel. Everything goes through wsnode.js.
// URL parameters: ?user=NAME (connects at once; dev mode) or ?token=JWT
// (a node with token auth), &room=room:lobby, &danmaku=danmaku:lobby,
// &reconnect_ms=N (first reconnect delay, no jitter), &batch=0 (no merged
// frames, to compare).
import { WsnodeClient } from "./wsnode.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const danmakuChannel = params.get("danmaku") || "danmaku:lobby";
const firstRoom = params.get("room") || "room:lobby";
const MAX_MESSAGES = 500; // DOM stays bounded
const MAX_BULLETS = 150;
const MAX_MEMBER_PAGES = 10; // the page lists at most 10 pages of 1,000 members
const batch = params.get("batch") !== "0";

let client = null;
let me = null; // the user the server says we are (hello)
let received = 0;
let sent = 0;
const bulletTimes = []; // arrival times of the last second's bullets
const laneUsed = []; // per stage lane: when a bullet last started there
let lastStats = null; // client.stats a second ago

// ------------------------------------------------------------------ status

function showState() {
  const s = client ? client.state : "idle";
  const state = $("state");
  state.textContent = s;
  state.className = `state ${s}`;
  $("diag-state").textContent = s;
  $("node").textContent = client?.node || "-";
  $("diag-node").textContent = client?.node || "-";
  $("diag-sid").textContent = client?.sid || "-";
  $("reconnects").textContent = String(client?.reconnects || 0);
  $("diag-reconnects").textContent = String(client?.reconnects || 0);
}

function showError(e) {
  $("last-error").textContent = e && e.code ? `${e.code}: ${e.message}` : String(e);
}

// ------------------------------------------------------------------ chat

function textOf(data) {
  if (data && typeof data === "object" && typeof data.text === "string") return data.text;
  return JSON.stringify(data);
}

function addMessage({ kind, where, from, text }) {
  const li = document.createElement("li");
  li.className = kind;
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = new Date().toLocaleTimeString();
  li.append(time);
  if (where) {
    const w = document.createElement("span");
    w.className = "where";
    w.textContent = where;
    li.append(w);
  }
  if (from !== undefined) {
    const f = document.createElement("span");
    f.className = "from";
    f.textContent = from || "(server)";
    li.append(f);
  }
  const t = document.createElement("span");
  t.className = "text";
  t.textContent = text;
  li.append(t);
  li.dataset.kind = kind;
  li.dataset.from = from || "";
  li.dataset.where = where || "";
  const list = $("messages");
  list.append(li);
  while (list.children.length > MAX_MESSAGES) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

function onRoomMessage(msg) {
  received++;
  $("received-count").textContent = String(received);
  addMessage({ kind: "msg", where: msg.ch, from: msg.from, text: textOf(msg.data) });
}

// ------------------------------------------------------------------ presence

const members = new Map(); // room -> Set(user), for rooms with presence

function showMembers() {
  const ch = $("chat-room").value;
  const set = members.get(ch);
  $("members-room").textContent = set ? ch : "-";
  $("members-count").textContent = set ? String(set.size) : "0";
  const list = $("members");
  list.replaceChildren();
  for (const user of set ? [...set].sort() : []) {
    const li = document.createElement("li");
    li.textContent = user;
    list.append(li);
  }
}

// Who is in `ch` now (every page); rooms without presence show nothing.
async function loadMembers(ch) {
  const set = new Set();
  let cursor;
  try {
    for (let page = 0; page < MAX_MEMBER_PAGES; page++) {
      const r = await client.presence(ch, { limit: 1000, cursor });
      for (const u of r.users) set.add(u);
      if (!r.cursor) break;
      cursor = r.cursor;
    }
  } catch (e) {
    if (e.code !== "forbidden") showError(e);
    return; // forbidden: this namespace has no presence
  }
  members.set(ch, set);
  showMembers();
}

function onPresenceEvent(e) {
  const { op, ch, user } = e.detail;
  const set = members.get(ch);
  if (set) {
    if (op === "join") set.add(user);
    else set.delete(user);
    showMembers();
  }
  addMessage({ kind: "system", text: `${user} ${op === "join" ? "joined" : "left"} ${ch}` });
}

async function joinRoom(ch, token) {
  if (!client || client.channels.includes(ch)) return;
  try {
    await client.subscribe(ch, onRoomMessage, token ? { token } : {});
  } catch (e) {
    showError(e);
    return;
  }
  showRoom(ch);
  addMessage({ kind: "system", text: `joined ${ch}` });
}

// A room in the list and the chat's room menu (once).
function showRoom(ch) {
  if ([...$("chat-room").options].some((o) => o.value === ch)) return;
  const li = document.createElement("li");
  li.textContent = ch;
  li.dataset.ch = ch;
  $("rooms").append(li);
  const opt = document.createElement("option");
  opt.value = ch;
  opt.textContent = ch;
  $("chat-room").append(opt);
  $("chat-room").value = ch;
  loadMembers(ch);
}

function hideRoom(ch) {
  for (const li of $("rooms").querySelectorAll("li"))
    if (li.dataset.ch === ch) li.remove();
  for (const o of [...$("chat-room").options]) if (o.value === ch) o.remove();
}

// ------------------------------------------------------------------ danmaku

function fly(text) {
  const stage = $("stage");
  const b = document.createElement("span");
  b.className = "bullet";
  b.textContent = text;
  // the lane used longest ago, so that comments rarely overlap
  const lanes = Math.max(1, Math.floor(stage.clientHeight / 28) - 1);
  let lane = 0;
  for (let i = 1; i < lanes; i++) if ((laneUsed[i] || 0) < (laneUsed[lane] || 0)) lane = i;
  laneUsed[lane] = performance.now();
  b.style.top = `${4 + 28 * lane}px`;
  b.style.animationDuration = `${6 + Math.random() * 3}s`;
  b.addEventListener("animationend", () => b.remove());
  stage.append(b);
  const bullets = stage.getElementsByClassName("bullet");
  while (bullets.length > MAX_BULLETS) bullets[0].remove();
  bulletTimes.push(performance.now());
}

setInterval(() => {
  const now = performance.now();
  while (bulletTimes.length && now - bulletTimes[0] > 1000) bulletTimes.shift();
  $("danmaku-rate").textContent = String(bulletTimes.length);
}, 250);

// With merged frames a busy danmaku room arrives in fewer frames than
// messages: this shows by how much.
setInterval(() => {
  const now = client ? { ...client.stats } : null;
  const frames = now && lastStats ? now.frames - lastStats.frames : 0;
  const msgs = now && lastStats ? now.msgs - lastStats.msgs : 0;
  lastStats = now;
  $("diag-frames").textContent = String(frames);
  $("diag-msgs").textContent = String(msgs);
  $("diag-per-frame").textContent = frames ? (msgs / frames).toFixed(1) : "-";
}, 1000);

// ------------------------------------------------------------------ connection

function connect({ user, token }) {
  if (client) client.close();
  members.clear();
  showMembers();
  received = 0;
  sent = 0;
  lastStats = null;
  $("received-count").textContent = "0";
  $("sent-count").textContent = "0";
  $("rooms").replaceChildren();
  $("chat-room").replaceChildren();
  const reconnectMs = Number(params.get("reconnect_ms"));
  const backoff = reconnectMs > 0 ? { initialMs: reconnectMs, jitter: 0 } : {};
  client = new WsnodeClient(token ? { token, backoff, batch } : { user, backoff, batch });
  client.addEventListener("join", onPresenceEvent);
  client.addEventListener("leave", onPresenceEvent);
  client.addEventListener("recovery", (e) => {
    const { ch, recovered, count } = e.detail;
    const line = recovered
      ? `recovered ${count} messages in ${ch}`
      : `${ch}: could not recover what was missed (history too short or reset)`;
    $("recovery").textContent = line;
    addMessage({ kind: "system", text: line });
  });
  client.addEventListener("state", showState);
  client.addEventListener("open", (e) => {
    me = e.detail.user;
    showState();
    addMessage({ kind: "system", text: `connected to ${e.detail.node} as ${e.detail.user}` });
    // who came and went while this page was away
    for (const ch of members.keys()) loadMembers(ch);
  });
  client.addEventListener("close", (e) => {
    if (client.state === "closed") return;
    const { code, reason, kind } = e.detail;
    const why = {
      application: `disconnected by the application${reason ? `: ${reason}` : ""}; reconnecting slowly`,
      token: "the token expired or was refused; reconnecting with a new one",
      draining: "the node is stopping; reconnecting to another",
      slow: "this page could not keep up; reconnecting",
    }[kind] ?? `connection lost (${code}${reason ? `: ${reason}` : ""}); reconnecting`;
    addMessage({ kind: "system", text: why });
  });
  // the application's server API (or connect hook) chose channels for us
  client.addEventListener("subscribed", (e) => {
    const ch = e.detail.ch;
    addMessage({ kind: "system", text: `the server subscribed you to ${ch}` });
    if (ch.startsWith("room:")) {
      client.subscribe(ch, onRoomMessage).catch(showError);
      showRoom(ch);
    }
  });
  client.addEventListener("unsubscribed", (e) => {
    addMessage({ kind: "system", text: `the server took you out of ${e.detail.ch}` });
    hideRoom(e.detail.ch);
  });
  client.addEventListener("dm", (e) => {
    addMessage({ kind: "dm", where: "dm", from: e.detail.from, text: textOf(e.detail.data) });
  });
  client.connect();
  client.subscribe(danmakuChannel, (msg) => fly(textOf(msg.data))).catch(showError);
  joinRoom(firstRoom);
  showState();
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  connect({ user: $("name").value.trim() });
});

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  joinRoom($("room-input").value.trim(), $("room-token").value.trim());
});

$("chat-room").addEventListener("change", showMembers);

$("chat-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("chat-input").value;
  const ch = $("chat-room").value;
  if (!client || !text || !ch) return;
  client.publish(ch, { text }).then(() => {
    $("sent-count").textContent = String(++sent);
  }, showError);
  $("chat-input").value = "";
});

$("dm-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const to = $("dm-to").value.trim();
  const text = $("dm-text").value;
  if (!client || !to || !text) return;
  client.send(to, { text }).then(() => {
    addMessage({ kind: "dm", where: `to ${to}`, from: me, text });
  }, showError);
  $("dm-text").value = "";
});

$("danmaku-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("danmaku-input").value;
  if (!client || !text) return;
  client.publish(danmakuChannel, { text }).catch(showError);
  $("danmaku-input").value = "";
});

// The classic tutorial's buttons: open, send 100 messages, close.
$("diag-open").addEventListener("click", () => {
  const user = $("name").value.trim() || client?.user;
  if (!user) return showError("enter a name first");
  if (client && client.user === user && client.state !== "closed") return;
  connect({ user });
});

$("diag-close").addEventListener("click", () => {
  if (client) client.close();
  showState();
});

$("diag-send100").addEventListener("click", async () => {
  const ch = $("chat-room").value || firstRoom;
  if (!client) return showError("not connected");
  const all = [];
  for (let i = 1; i <= 100; i++) {
    all.push(client.publish(ch, { text: `diag ${i}/100` }).then(() => {
      $("sent-count").textContent = String(++sent);
    }));
  }
  await Promise.all(all).catch(showError);
});

$("danmaku-room").textContent = danmakuChannel;
const initialUser = params.get("user");
const initialToken = params.get("token");
if (initialToken) {
  connect({ token: initialToken });
} else if (initialUser) {
  $("name").value = initialUser;
  connect({ user: initialUser });
}
