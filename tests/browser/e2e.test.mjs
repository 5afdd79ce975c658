// The demo page in real headless Chromium (Debian's chromium, driven by
// playwright-core) against a 3-node wsnode cluster behind nginx, started
// with scripts/cluster. Every process is stopped by PID at the end.
// WSNODE_BACKBONE=nats links the nodes through 3 nats-servers
// (`scripts/cluster up 3 --nats`) instead of the ZeroMQ mesh.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import net from "node:net";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const PYTHON = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARTIFACTS = process.env.WSNODE_ARTIFACTS || path.join(ROOT, "build", "browser-artifacts");
const RUN_DIR = fs.mkdtempSync(path.join(os.tmpdir(), "wsnode-browser-"));
const BACKBONE = process.env.WSNODE_BACKBONE || "mesh";

let cluster; // cluster.json
let browser;
const pages = {}; // name -> {page, errors}

function clusterCmd(...args) {
  return execFileSync(PYTHON, [path.join(ROOT, "scripts", "cluster"), ...args, "--dir", RUN_DIR], {
    env: process.env,
    encoding: "utf8",
    timeout: 120000,
  });
}

function readCluster() {
  cluster = JSON.parse(fs.readFileSync(path.join(RUN_DIR, "cluster.json"), "utf8"));
}

const front = () => `http://127.0.0.1:${cluster.nginx.port}`;

async function openPage(name, user, extra = "") {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`console: ${msg.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  await page.goto(`${front()}/?user=${user}${extra}`);
  await waitState(page, "open");
  pages[name] = { page, errors, context };
  return page;
}

async function waitState(page, state, timeout = 15000) {
  await page.waitForFunction((s) => document.getElementById("state").textContent === s, state, {
    timeout,
  });
}

const text = (page, id) => page.locator(`#${id}`).textContent();

before(async () => {
  // 3 nodes: the rooms keep history, which needs a majority of the nodes
  const nats = BACKBONE === "nats" ? ["--nats"] : [];
  // compression on: Chromium always offers permessage-deflate, so the page
  // inflates the frames every node compresses once and shares
  clusterCmd("up", "3", "--port", "0", ...nats, "--set", "mesh.heartbeat_ms=200",
             "--set", "ws.compression=true");
  readCluster();
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox", // tests may run as root
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-default-apps",
      "--disable-sync",
      "--disable-domain-reliability",
      "--disable-client-side-phishing-detection",
      "--disable-breakpad",
      "--metrics-recording-only",
      "--no-first-run",
      "--no-proxy-server",
      "--disable-features=Translate,OptimizationHints,MediaRouter,NetworkTimeServiceQuerying",
    ],
  });
});

after(async () => {
  try {
    for (const [name, { page }] of Object.entries(pages)) {
      // a page a test closed has nothing to show; nothing here may skip the cleanup below
      await page
        .screenshot({ path: path.join(ARTIFACTS, `page-${name}.png`), fullPage: true })
        .catch(() => {});
    }
    if (browser) await browser.close();
  } catch (_) {
    /* the processes below are stopped whatever happened */
  }
  try {
    clusterCmd("down");
  } finally {
    readCluster();
    const natsPids = (cluster.nats || []).map((x) => x.pid);
    for (const pid of [...cluster.nodes.map((n) => n.pid), cluster.nginx.pid, ...natsPids]) {
      if (pid) {
        try {
          process.kill(pid, "SIGKILL");
        } catch (_) {
          /* already gone */
        }
      }
    }
  }
});

test("two pages on different nodes exchange a DM and room messages", async () => {
  const a = await openPage("a", "alice");
  let b = await openPage("b", "bob");
  // least_conn sends bob to the other node; make sure of it
  for (let i = 0; i < 10 && (await text(b, "node")) === (await text(a, "node")); i++) {
    await pages.b.context.close();
    b = await openPage("b", "bob");
  }
  assert.notEqual(await text(a, "node"), await text(b, "node"));

  await a.fill("#dm-to", "bob");
  await a.fill("#dm-text", "hello bob");
  await a.click("#dm-send");
  await b.locator('#messages li.dm[data-from="alice"]', { hasText: "hello bob" }).waitFor();

  await b.fill("#chat-input", "hi room, from bob");
  await b.click("#chat-send");
  await a
    .locator('#messages li.msg[data-from="bob"][data-where="room:lobby"]', {
      hasText: "hi room, from bob",
    })
    .waitFor();
});

test("a message published through the HTTP API flies as a danmaku comment", async () => {
  const { page: a } = pages.a;
  const res = await fetch(`${front()}/api/publish`, {
    method: "POST",
    body: JSON.stringify({ ch: "danmaku:lobby", data: { text: "from the API ✓" } }),
  });
  assert.equal(res.status, 200);
  await a.locator("#stage .bullet", { hasText: "from the API ✓" }).waitFor();
  // a comment fired from the page reaches the other page too
  const { page: b } = pages.b;
  await b.fill("#danmaku-input", "bullet from bob");
  await b.click("#danmaku-fire");
  await a.locator("#stage .bullet", { hasText: "bullet from bob" }).waitFor();
  await a.waitForFunction(() => Number(document.getElementById("danmaku-rate").textContent) >= 1);
});

test("a burst of comments reaches the page in merged, compressed frames", async () => {
  const { page: a } = pages.a;
  const metric = async (name) => {
    let sum = 0;
    for (const n of cluster.nodes) {
      const text = await (await fetch(`http://127.0.0.1:${n.http}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith(name + " "));
      sum += line ? Number(line.split(" ")[1]) : 0;
    }
    return sum;
  };
  const merged0 = await metric("wsnode_merged_frames_total");
  for (let i = 0; i < 30; i++) {
    const res = await fetch(`${front()}/api/publish`, {
      method: "POST",
      body: JSON.stringify({ ch: "danmaku:lobby", data: { text: `burst ${i}` } }),
    });
    assert.equal(res.status, 200);
  }
  await a.locator("#stage .bullet", { hasText: "burst 29" }).waitFor();
  // the page counted more messages than frames over the burst's second
  await a.waitForFunction(() => Number(document.getElementById("diag-per-frame").textContent) > 1);
  assert.ok((await metric("wsnode_merged_frames_total")) > merged0);
  assert.ok((await metric("wsnode_deflate_calls_total")) > 0);
});

test("the server API subscribes a page to a room, takes it out, and disconnects a user", async () => {
  const { page: a } = pages.a;
  const api = (path, body) =>
    fetch(`${front()}/api/${path}`, { method: "POST", body: JSON.stringify(body) });
  let res = await api("subscribe", { user: "alice", ch: "room:api" });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).sessions, 1);
  await a.locator("#messages li.system", { hasText: "the server subscribed you to room:api" }).waitFor();
  await a.locator("#rooms li", { hasText: "room:api" }).waitFor();
  res = await api("publish", { ch: "room:api", data: { text: "to the chosen" } });
  assert.equal(res.status, 200);
  await a.locator('#messages li.msg[data-where="room:api"]', { hasText: "to the chosen" }).waitFor();
  res = await api("unsubscribe", { user: "alice", ch: "room:api" });
  assert.equal(res.status, 200);
  await a.locator("#messages li.system", { hasText: "the server took you out of room:api" }).waitFor();
  assert.equal(await a.locator("#rooms li", { hasText: "room:api" }).count(), 0);

  const d = await openPage("d", "dave");
  res = await api("disconnect", { user: "dave", reason: "moderated" });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).sessions, 1);
  await d
    .locator("#messages li.system", { hasText: "disconnected by the application: moderated" })
    .waitFor();
  assert.deepEqual(pages.d.errors, []);
  await pages.d.context.close();
  delete pages.d; // closed: the console check and the screenshots skip it
});

test("'send 100 messages' delivers 100 messages to the other page", async () => {
  const { page: a } = pages.a;
  const { page: b } = pages.b;
  const before = Number(await text(b, "received-count"));
  await a.click("#diag-send100");
  await b.waitForFunction(
    (n) => Number(document.getElementById("received-count").textContent) >= n,
    before + 100,
    { timeout: 15000 },
  );
  await a.waitForFunction(() => Number(document.getElementById("sent-count").textContent) >= 100);
  await b.locator("#messages li.msg", { hasText: "diag 100/100" }).waitFor();
  assert.equal(Number(await text(b, "received-count")), before + 100);
});

test("killing a page's node: it reconnects elsewhere and recovers the room's missed messages", async () => {
  // page c waits 4 s before it reconnects, so that messages are sure to be
  // published while it is away
  let c = await openPage("c", "carol", "&reconnect_ms=4000");
  const { page: a } = pages.a;
  const { page: b } = pages.b;
  const taken = async () => [await text(a, "node"), await text(b, "node")];
  for (let i = 0; i < 10 && (await taken()).includes(await text(c, "node")); i++) {
    await pages.c.context.close();
    c = await openPage("c", "carol", "&reconnect_ms=4000");
  }
  const victim = await text(c, "node");
  const k = cluster.nodes.findIndex((n) => n.id === victim) + 1;
  const sawReconnecting = c.waitForFunction(
    () => document.getElementById("state").textContent === "reconnecting",
    null,
    { timeout: 15000, polling: 10 },
  );
  clusterCmd("kill", String(k));
  await sawReconnecting;
  const survivor = cluster.nodes.find((n) => n.id !== victim);
  for (let i = 1; i <= 3; i++) {
    let ok = false;
    for (let t = 0; t < 20 && !ok; t++) { // until the room's new owner answers
      const r = await fetch(`http://127.0.0.1:${survivor.http}/api/publish`, {
        method: "POST",
        body: JSON.stringify({ ch: "room:lobby", data: { text: `while away ${i}` }, key: `away-${i}` }),
      });
      ok = r.status === 200;
      if (!ok) await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(ok, `publish ${i} while carol is away`);
  }
  await waitState(c, "open", 20000);
  assert.notEqual(await text(c, "node"), victim);
  await c.locator("#recovery", { hasText: "recovered 3 messages in room:lobby" }).waitFor();
  for (let i = 1; i <= 3; i++)
    await c.locator("#messages li.msg", { hasText: `while away ${i}` }).waitFor();
  assert.equal(await c.locator("#messages li.msg", { hasText: "while away 1" }).count(), 1);
  await c.screenshot({ path: path.join(ARTIFACTS, "page-recovered.png") });
  assert.equal(await text(a, "reconnects"), "0"); // the others were elsewhere
  clusterCmd("start", String(k));
  readCluster();
});

test("killing a page's node: it shows reconnecting, then works on the other node", async () => {
  const { page: a } = pages.a;
  const { page: b } = pages.b;
  const victim = await text(a, "node");
  const k = cluster.nodes.findIndex((n) => n.id === victim) + 1;
  const sawReconnecting = a.waitForFunction(
    () => document.getElementById("state").textContent === "reconnecting",
    null,
    { timeout: 15000, polling: 10 },
  );
  clusterCmd("kill", String(k));
  await sawReconnecting;
  await waitState(a, "open");
  assert.notEqual(await text(a, "node"), victim);
  assert.equal(await text(a, "reconnects"), "1");
  // the same page, without a reload: DMs and its room subscription work
  await b.fill("#dm-to", "alice");
  await b.fill("#dm-text", "are you back?");
  await b.click("#dm-send");
  await a.locator('#messages li.dm[data-from="bob"]', { hasText: "are you back?" }).waitFor();
  await b.fill("#chat-input", "room after failover");
  await b.click("#chat-send");
  await a.locator("#messages li.msg", { hasText: "room after failover" }).waitFor();
});

test("static files: MIME types, 404s, no traversal", async () => {
  for (const [p, type] of [
    ["/", "text/html"],
    ["/wsnode.js", "text/javascript"],
    ["/app.js", "text/javascript"],
    ["/style.css", "text/css"],
  ]) {
    const r = await fetch(`${front()}${p}`);
    assert.equal(r.status, 200, p);
    assert.ok(r.headers.get("content-type").startsWith(type), p);
  }
  assert.equal((await fetch(`${front()}/nope.js`)).status, 404);
  assert.equal((await fetch(`${front()}/%2e%2e/config.toml`)).status, 404);
});

test("the page works on a single node too (no mesh, no nginx)", async () => {
  const port = await new Promise((resolve) => {
    const srv = net.createServer().listen(0, "127.0.0.1", () => {
      const p = srv.address().port;
      srv.close(() => resolve(p));
    });
  });
  const cfg = path.join(RUN_DIR, "single.toml");
  fs.writeFileSync(
    cfg,
    `[node]\nid = "solo"\n[http]\nlisten = "127.0.0.1:${port}"\nstatic_dir = "${ROOT}/web"\n`,
  );
  const bin = process.env.WSNODE_BIN || path.join(ROOT, "build", "wsnode");
  const node = spawn(bin, ["--config", cfg], { stdio: "ignore" });
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors = [];
    page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
    page.on("pageerror", (e) => errors.push(e.message));
    for (let i = 0; i < 100; i++) {
      try {
        await page.goto(`http://127.0.0.1:${port}/?user=solo`);
        break;
      } catch (_) {
        await new Promise((r) => setTimeout(r, 50)); // not listening yet
      }
    }
    await waitState(page, "open");
    assert.equal(await text(page, "node"), "solo");
    await page.fill("#danmaku-input", "solo bullet");
    await page.click("#danmaku-fire");
    await page.locator("#stage .bullet", { hasText: "solo bullet" }).waitFor();
    await page.fill("#chat-input", "talking to myself");
    await page.click("#chat-send");
    await page.locator('#messages li.msg[data-from="solo"]', { hasText: "talking to myself" }).waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, "page-single-node.png") });
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    node.kill("SIGTERM");
    await new Promise((r) => (node.exitCode !== null ? r() : node.once("exit", r)));
  }
});

// A free TCP port on loopback (closed again: the caller binds it).
function freePort() {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, "127.0.0.1", () => {
      const p = srv.address().port;
      srv.close(() => resolve(p));
    });
  });
}

// Stops `child` (SIGTERM, then SIGKILL) and waits for its exit.
async function stopChild(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}

test("hooks: examples/hooks_backend.py: cookie login, rpc, word filter, unavailable", async () => {
  // the example backend and the example config, on free ports
  const backendPort = await freePort();
  let port = await freePort();
  while (port === backendPort) port = await freePort();
  const script = path.join(ROOT, "examples", "hooks_backend.py");
  const backend = spawn(PYTHON, [script, "--port", String(backendPort)], { stdio: "ignore" });
  const cfg = path.join(RUN_DIR, "hooks.toml");
  fs.writeFileSync(
    cfg,
    fs
      .readFileSync(path.join(ROOT, "examples", "hooks.toml"), "utf8")
      .replaceAll("127.0.0.1:9000", `127.0.0.1:${backendPort}`)
      .replace('listen = "127.0.0.1:8080"', `listen = "127.0.0.1:${port}"`)
      .replace(/^static_dir = .*$/m, `static_dir = "${ROOT}/web"`),
  );
  const bin = process.env.WSNODE_BIN || path.join(ROOT, "build", "wsnode");
  let node;
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    // log in at the backend: its session cookie (per host) goes to the node too
    for (let i = 0; ; i++) {
      try {
        const r = await page.goto(`http://127.0.0.1:${backendPort}/login?user=ann`);
        assert.equal(r.status(), 200);
        break;
      } catch (e) {
        if (i >= 100) throw e;
        await new Promise((r) => setTimeout(r, 50)); // not listening yet
      }
    }
    node = spawn(bin, ["--config", cfg], { stdio: "ignore" });
    for (let i = 0; ; i++) {
      try {
        // ?user= is not identity with a connect hook: the cookie is
        await page.goto(`http://127.0.0.1:${port}/?user=mallory`);
        break;
      } catch (e) {
        if (i >= 100) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    await waitState(page, "open");
    await page.locator("#messages li.system", { hasText: "as ann" }).waitFor();

    // the publish hook filters danmaku
    await page.fill("#danmaku-input", "no spoiler please");
    await page.click("#danmaku-fire");
    await page.locator("#stage .bullet", { hasText: "no *** please" }).waitFor();

    // rpc through wsnode.js: an answer, the application's error code
    const got = await page.evaluate(async () => {
      const { WsnodeClient } = await import("/wsnode.js");
      const c = new WsnodeClient({ user: "mallory" });
      window.hookClient = c;
      const hello = new Promise((r) =>
        c.addEventListener("open", (e) => r(e.detail), { once: true }),
      );
      c.connect();
      const { user } = await hello;
      const profile = await c.rpc("get_profile", { id: 7 });
      const err = await c.rpc("no_such_method").then(
        () => null,
        (e) => ({ name: e.name, code: e.code }),
      );
      return { user, profile, err };
    });
    assert.deepEqual(got, {
      user: "ann",
      profile: { name: "Ann" },
      err: { name: "WsnodeError", code: "not_found" },
    });

    // without the cookie the upgrade is refused (403 before the 101)
    const stranger = await browser.newContext();
    try {
      const p2 = await stranger.newPage();
      await p2.goto(`http://127.0.0.1:${port}/nope`).catch(() => {}); // any page of the origin
      const refused = await p2.evaluate(async () => {
        const { WsnodeClient } = await import("/wsnode.js");
        const c = new WsnodeClient({ user: "ann" });
        const closed = new Promise((r) =>
          c.addEventListener("close", (e) => r(e.detail.code), { once: true }),
        );
        c.connect();
        const code = await closed;
        const state = c.state;
        c.close();
        return { code, state };
      });
      assert.deepEqual(refused, { code: 1006, state: "reconnecting" });
    } finally {
      await stranger.close();
    }

    // the backend gone: rpc fails closed with unavailable, the socket stays
    await stopChild(backend);
    const down = await page.evaluate(async () => {
      const c = window.hookClient;
      const e = await c.rpc("get_profile").then(() => null, (x) => x);
      return { code: e && e.code, message: e && e.message, state: c.state };
    });
    assert.equal(down.code, "unavailable");
    assert.match(down.message, /^hook failed: /);
    assert.equal(down.state, "open");
    await page.screenshot({ path: path.join(ARTIFACTS, "page-hooks.png") });
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    await stopChild(node);
    await stopChild(backend);
  }
});

test("no errors in any page's console", () => {
  for (const [name, { errors }] of Object.entries(pages)) {
    assert.deepEqual(errors, [], `page ${name}`);
  }
});
