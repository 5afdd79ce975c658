// A second fan-out load generator, not built on our code: subscribers are
// clients of the `ws` library (npm) in one Node.js thread (libuv's epoll,
// each readable socket read until the kernel has no more), so that a
// number wsbench gives can be checked by a client we did not write.
//
//   node ws-fanout.js --protocol wsnode|nchan|socketio --port P
//        [--subscribers 1000] [--messages 1000] [--window 16] [--size 100]
//        [--rate 0] [--http-publish] [--server-pid PID ...]
//        [--batch] [--channel bench.fanout] [--deflate]
//
// Delivery-bounded: at most --window messages published and not yet
// delivered to every subscriber (with --rate, publishes are also paced at
// that many messages/s). wsnode and Nchan publish over HTTP (wsnode's
// /api/publish, Nchan's /pub/CH), Socket.IO over a WebSocket with acks.
// Prints one JSON line: deliveries, loss, latency p50/p99, server CPU
// (from /proc), this process's CPU per delivery, the whole machine's busy
// CPU over the run, and per socket read
// (each 'data' event of a subscriber's socket) the bytes and deliveries.
// --batch (wsnode only): subscribers connect with batch=1 and take merged
// frames (protocol v1.2), each element one delivery; the server merges only
// in a namespace with merge_ms > 0, so pick its channel with --channel
// (e.g. danmaku:bench; the default bench.fanout is in no namespace).
// --deflate: subscribers offer permessage-deflate (ws's default offer), so
// a server with compression on sends them compressed frames.
"use strict";
const fs = require("fs");
const http = require("http");
const WebSocket = require("ws");

function parseArgs(argv) {
  const a = { protocol: "wsnode", port: 8080, subscribers: 1000, messages: 1000, window: 16,
              size: 100, rate: 0, serverPid: [], httpPublish: false, timeout: 120,
              batch: false, channel: "bench.fanout", deflate: false };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i];
    const v = () => argv[++i];
    if (k === "--protocol") a.protocol = v();
    else if (k === "--port") a.port = Number(v());
    else if (k === "--subscribers") a.subscribers = Number(v());
    else if (k === "--messages") a.messages = Number(v());
    else if (k === "--window") a.window = Number(v());
    else if (k === "--size") a.size = Number(v());
    else if (k === "--rate") a.rate = Number(v());
    else if (k === "--timeout") a.timeout = Number(v());
    else if (k === "--server-pid") a.serverPid.push(Number(v()));
    else if (k === "--http-publish") a.httpPublish = true;
    else if (k === "--batch") a.batch = true;
    else if (k === "--channel") a.channel = v();
    else if (k === "--deflate") a.deflate = true;
    else throw new Error(`unknown argument ${k}`);
  }
  if (a.batch && a.protocol !== "wsnode") throw new Error("--batch is wsnode only");
  return a;
}

const args = parseArgs(process.argv);
const CH = args.channel;
const TICK = 100; // clock ticks per second of /proc/PID/stat (Linux default)

function serverCpu() {
  let s = 0;
  for (const pid of args.serverPid) {
    try {
      const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
      s += (Number(rest[11]) + Number(rest[12])) / TICK; // utime, stime
    } catch (e) { /* gone: counts 0 */ }
  }
  return s;
}

// Every core's busy time (/proc/stat): on loopback the receiving side's TCP
// work is paid by whoever makes the kernel send, so this is the measure that
// does not depend on when the kernel sends (docs/capacity-notes.md).
function machineBusy() {
  const f = fs.readFileSync("/proc/stat", "utf8");
  const v = f.slice(0, f.indexOf("\n")).trim().split(/\s+/).slice(1, 9).map(Number);
  return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / TICK; // all but idle and iowait
}

function payload(seq) {
  const head = `{"i":${seq},"t":0,"s":1,"p":"`;
  return head + "x".repeat(Math.max(0, args.size - head.length - 2)) + '"}';
}

function url(user) {
  const base = `ws://127.0.0.1:${args.port}`;
  if (args.protocol === "wsnode") return `${base}/ws?user=${user}${args.batch ? "&batch=1" : ""}`;
  if (args.protocol === "nchan") return `${base}/sub/${CH}`;
  return `${base}/socket.io/?EIO=4&transport=websocket&user=${user}`;
}

// ---------------------------------------------------------------- counting

const pending = new Map(); // seq -> { sent: hrtime ns, left: subscribers still to get it }
const latencies = [];
let delivered = 0, duplicates = 0, reads = 0, readBytes = 0, completed = 0, merged = 0;

function seqOf(text) {
  const at = text.indexOf('{"i":');
  if (at < 0) return -1;
  return parseInt(text.slice(at + 5, at + 25), 10);
}

function onDelivery(sub, text) {
  deliver(sub, seqOf(text), process.hrtime.bigint());
}

// A merged frame: every payload in it, in order, without parsing the JSON
// (as for single frames; only payloads start with {"i":). They all arrived
// now: one clock read for the frame, as an application would take one.
function onMerged(sub, text) {
  merged++;
  const now = process.hrtime.bigint();
  for (let at = text.indexOf('{"i":'); at >= 0; at = text.indexOf('{"i":', at + 5))
    deliver(sub, parseInt(text.slice(at + 5, at + 25), 10), now);
}

function deliver(sub, seq, now) {
  if (seq < 0) return;
  if (sub.seen.has(seq)) { duplicates++; return; }
  sub.seen.add(seq);
  if (sub.seen.size > 4096) sub.seen.clear(); // in order per subscriber; a bound on memory
  const p = pending.get(seq);
  if (!p) return;
  delivered++;
  latencies.push(Number(now - p.sent) / 1000);
  if (--p.left === 0) { pending.delete(seq); completed++; pump(); }
}

// ---------------------------------------------------------------- subscribers

function subscriber(i) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url(`wsf${i}`), { perMessageDeflate: args.deflate });
    const sub = { ws, seen: new Set(), ready: false };
    const ready = () => { if (!sub.ready) { sub.ready = true; resolve(sub); } };
    ws.on("open", () => {
      ws._socket.on("data", (b) => { reads++; readBytes += b.length; });
      if (args.protocol === "nchan") ready();
    });
    ws.on("message", (data) => {
      const t = data.toString();
      if (args.protocol === "wsnode") {
        if (t.startsWith('{"op":"msg"')) return onDelivery(sub, t);
        if (args.batch && t.startsWith('[{"op":"msg"')) return onMerged(sub, t);
        if (t.startsWith('{"op":"hello"')) return ws.send(`{"op":"sub","ch":"${CH}","id":1}`);
        if (t.startsWith('{"op":"ack"')) return ready();
        if (t.startsWith('{"op":"err"')) return reject(new Error(t));
      } else if (args.protocol === "nchan") {
        return onDelivery(sub, t);
      } else {
        if (t.startsWith("42")) return onDelivery(sub, t);
        if (t === "2") return ws.send("3");
        if (t.startsWith("0")) return ws.send("40");
        if (t.startsWith("40")) return ws.send(`421["sub","${CH}"]`);
        if (t.startsWith("431")) return ready();
      }
    });
    ws.on("error", reject);
  });
}

// ---------------------------------------------------------------- publishing

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
let pubWs = null, pubId = 0;
let published = 0, errors = 0, started = 0;
const acks = new Map();

function publishHttp(seq) {
  const body = args.protocol === "nchan" ? payload(seq)
                                         : `{"ch":"${CH}","data":${payload(seq)}}`;
  const path = args.protocol === "nchan" ? `/pub/${CH}` : "/api/publish";
  const req = http.request({ host: "127.0.0.1", port: args.port, path, method: "POST", agent,
                             headers: { "content-type": "application/json",
                                        "content-length": Buffer.byteLength(body) } },
                           (res) => { if (res.statusCode >= 300) errors++; res.resume(); });
  req.on("error", () => errors++);
  req.end(body);
}

function publishWs(seq) {
  const id = ++pubId;
  if (args.protocol === "socketio") pubWs.send(`42${id}["pub","${CH}",${payload(seq)}]`);
  else pubWs.send(`{"op":"pub","ch":"${CH}","data":${payload(seq)},"id":${id}}`);
}

function publisherWs() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url("wsfpub"), { perMessageDeflate: false });
    ws.on("message", (data) => {
      const t = data.toString();
      if (args.protocol === "socketio") {
        if (t === "2") ws.send("3");
        else if (t.startsWith("0")) ws.send("40");
        else if (t.startsWith("40")) resolve(ws);
        else if (t.startsWith("44")) errors++;
      } else if (t.startsWith('{"op":"hello"')) resolve(ws);
      else if (t.startsWith('{"op":"err"')) errors++;
    });
    ws.on("error", reject);
  });
}

let t0 = 0n, lastDelivery = 0n, done = null, paceTimer = null;

function pump() {
  if (published >= args.messages) {
    if (completed >= published && done) done();
    return;
  }
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  const due = args.rate > 0 ? Math.min(args.messages, Math.floor(args.rate * elapsed) + 1)
                            : args.messages;
  while (published < due && published - completed < args.window) {
    const seq = ++published;
    pending.set(seq, { sent: process.hrtime.bigint(), left: subs.length });
    if (pubWs) publishWs(seq); else publishHttp(seq);
  }
  if (args.rate > 0 && published < args.messages && !paceTimer)
    paceTimer = setTimeout(() => { paceTimer = null; pump(); }, 1);
}

let subs = [];

async function main() {
  for (let i = 0; i < args.subscribers; i += 200) {
    const batch = [];
    for (let j = i; j < Math.min(args.subscribers, i + 200); j++) batch.push(subscriber(j));
    subs = subs.concat(await Promise.all(batch));
  }
  if (args.protocol === "socketio" || (args.protocol === "wsnode" && !args.httpPublish))
    pubWs = await publisherWs();
  reads = 0; readBytes = 0; merged = 0;
  const cpu0 = process.cpuUsage(), srv0 = serverCpu(), busy0 = machineBusy();
  t0 = process.hrtime.bigint();
  const finished = new Promise((resolve) => { done = resolve; });
  const guard = setTimeout(() => done && done(), args.timeout * 1000); // bounded in time
  pump();
  await finished;
  clearTimeout(guard);
  lastDelivery = process.hrtime.bigint();
  const cpu = process.cpuUsage(cpu0), srv = serverCpu() - srv0, busy = machineBusy() - busy0;
  const seconds = Number(lastDelivery - t0) / 1e9;
  const clientCpu = (cpu.user + cpu.system) / 1e6;
  latencies.sort((a, b) => a - b);
  const q = (x) => latencies.length ? latencies[Math.min(latencies.length - 1,
                                                         Math.floor(x * latencies.length))] : 0;
  const expected = published * subs.length;
  console.log(JSON.stringify({
    client: "ws-fanout.js (ws " + require("ws/package.json").version + ")",
    protocol: args.protocol, subscribers: subs.length, window: args.window, bound: "delivery",
    http_publish: !pubWs, published, expected, delivered, lost: expected - delivered, duplicates,
    errors, seconds, delivered_per_s: delivered / seconds, server_cpu_s: srv,
    delivered_per_server_cpu_s: srv > 0 ? delivered / srv : 0, client_cpu_s: clientCpu,
    client_us_per_delivery: delivered ? clientCpu * 1e6 / delivered : 0,
    machine_cpu_s: busy, delivered_per_machine_cpu_s: busy > 0 ? delivered / busy : 0,
    client_reads: reads,
    bytes_per_client_read: reads ? readBytes / reads : 0,
    deliveries_per_client_read: reads ? delivered / reads : 0,
    latency_us: { p50: Math.round(q(0.5)), p99: Math.round(q(0.99)) },
    ...(args.batch ? { batch: true, channel: CH, merged_frames: merged } : {}),
    ...(args.deflate ? { deflate: subs.some((s) => s.ws.extensions.includes("permessage-deflate")) } : {}),
  }));
  for (const s of subs) s.ws.terminate();
  if (pubWs) pubWs.terminate();
  agent.destroy();
}

main().then(() => process.exit(0), (e) => { console.error(e.message || e); process.exit(1); });
