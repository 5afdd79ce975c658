// The Socket.IO 4 peer for scripts/bench: the same operations as wsnode's
// protocol, as events. PORT, and REDIS_URL to join other processes through
// @socket.io/redis-adapter (the classic "Socket.IO + Redis pub/sub" setup).
//   sub(ch, ack)        join room ch
//   pub(ch, data, ack)  emit "msg" to room ch (on every process)
//   dm(user, data, ack) emit "msg" to the user's room "u:<user>"
const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 3000);
const server = http.createServer((req, res) => {
  res.writeHead(req.url === "/healthz" ? 200 : 404).end(req.url === "/healthz" ? "ok\n" : "");
});
const io = new Server(server, { transports: ["websocket"], serveClient: false });

io.on("connection", (socket) => {
  const user = socket.handshake.query.user;
  if (user) socket.join(`u:${user}`);
  socket.on("sub", (ch, ack) => {
    socket.join(ch);
    if (typeof ack === "function") ack();
  });
  socket.on("pub", (ch, data, ack) => {
    io.to(ch).emit("msg", data);
    if (typeof ack === "function") ack();
  });
  socket.on("dm", (to, data, ack) => {
    io.to(`u:${to}`).emit("msg", data);
    if (typeof ack === "function") ack();
  });
});

async function main() {
  if (process.env.REDIS_URL) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-adapter");
    const pub = createClient({ url: process.env.REDIS_URL });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
  }
  server.listen(port, "127.0.0.1", () => console.log(`socket.io listening on ${port}`));
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
process.on("SIGTERM", () => process.exit(0));
