"""A TCP relay a test controls (in the spirit of Toxiproxy), for fault tests
of the mesh: each node's SUB socket reaches a peer's XPUB through one.

    r = Relay(target_port)            # listens on r.port (loopback)
    r.set(TO_CLIENT, "blackhole")     # the target's bytes are dropped
    r.set(TO_CLIENT, "pass")          # forwarding again (see heal below)
    r.set(BOTH, "slow", ms=300)       # each chunk delayed by 300 ms
    r.reset(); r.close()

Directions are named from the relay's side: TO_TARGET carries what the
connecting side (the client, a wsnode SUB) sends, TO_CLIENT what the target
(a wsnode XPUB) answers. Modes, per direction:

- "pass": forward as read.
- "slow": forward each chunk `ms` after it was read (order kept).
- "blackhole": read and discard; both TCP connections stay open, nothing is
  closed and nothing reaches the other side, as in a silent partition.
- "stall": stop forwarding but keep the bytes (up to the cap, then stop
  reading, so TCP flow control pushes back on the sender): a partition
  shorter than TCP's retransmission timeout, where nothing is lost.

Heal: leaving "blackhole" closes every connection that dropped bytes
(ZeroMQ reconnects within its reconnect interval, ~100 ms) instead of
forwarding into a stream whose framing lost bytes; `close_on_heal=False`
keeps them. Leaving "stall" flushes what was kept.

A connection whose target refuses is closed at once; an EOF or error on
either socket closes both (ZeroMQ does not half-close). One thread per
relay; `set`/`reset` are applied by it before they return.
"""
import collections
import errno
import selectors
import socket
import threading
import time

from harness import free_port

TO_TARGET = "to_target"
TO_CLIENT = "to_client"
BOTH = (TO_TARGET, TO_CLIENT)
MODES = ("pass", "slow", "blackhole", "stall")
CAP = 8 << 20  # bytes kept per direction of a connection before reading stops
CHUNK = 65536


class _Pipe:
    """One direction of one connection: bytes read from `src`, not yet
    written to `dst`, as (due time, bytes) in order."""

    def __init__(self, src, dst):
        self.src, self.dst = src, dst
        self.queue = collections.deque()
        self.queued = 0
        self.dropped = 0


class _Conn:
    def __init__(self, client, target):
        self.client, self.target = client, target
        self.pipes = {TO_TARGET: _Pipe(client, target), TO_CLIENT: _Pipe(target, client)}
        self.closed = False


class Relay:
    def __init__(self, target_port, name=None, close_on_heal=True):
        self.target_port = target_port
        self.name = name or f"relay->{target_port}"
        self.close_on_heal = close_on_heal
        self.port = free_port()
        self.modes = {TO_TARGET: ("pass", 0), TO_CLIENT: ("pass", 0)}
        self.stats = collections.Counter()  # accepted, refused, closed, bytes/dropped per direction
        self._lock = threading.Lock()
        self._commands = []
        self._conns = []
        self._sel = selectors.DefaultSelector()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._stopping = False
        self.error = None  # what stopped the relay thread, if it died
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ any thread
    def set(self, direction, mode, ms=0):
        """Sets the mode of one direction (or BOTH); returns once applied."""
        assert mode in MODES, mode
        for d in ((direction,) if isinstance(direction, str) else direction):
            assert d in BOTH, d
            self._call("set", d, mode, ms)

    def reset(self):
        """Closes every current connection now (new ones are accepted)."""
        self._call("reset")

    def close(self):
        if self._thread.is_alive():
            self._call("stop")
            self._thread.join(5)
        self._sel.close()
        for s in (self._listener, self._wake_r, self._wake_w):
            s.close()

    def connections(self):
        with self._lock:
            return len(self._conns)

    def _call(self, *cmd):
        done = threading.Event()
        with self._lock:
            self._commands.append((cmd, done))
        self._wake_w.send(b"x")
        if not done.wait(5) or (self.error and cmd[0] != "stop"):
            raise RuntimeError(f"{self.name}: {cmd[0]} not applied ({self.error or 'timeout'})")

    # ------------------------------------------------------------ relay thread
    def _run(self):
        try:
            while not self._stopping:
                self._interest()
                for key, events in self._sel.select(self._timeout()):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        self._commands_now()
                    else:
                        conn, sock = key.data
                        if events & selectors.EVENT_READ:
                            self._read(conn, sock)
                        if events & selectors.EVENT_WRITE and not conn.closed:
                            self._flush(conn)
                now = time.monotonic()
                for conn in list(self._conns):
                    if not conn.closed and any(p.queue and p.queue[0][0] <= now
                                               for p in conn.pipes.values()):
                        self._flush(conn)
        except Exception as e:  # noqa: BLE001 - kept for the next caller
            self.error = repr(e)
            raise
        finally:
            for conn in list(self._conns):
                self._drop(conn)
            with self._lock:  # nobody waits forever on a relay that stopped
                for _, done in self._commands:
                    done.set()
                self._commands.clear()

    def _commands_now(self):
        try:
            self._wake_r.recv(4096)
        except BlockingIOError:
            pass
        with self._lock:
            cmds, self._commands = self._commands, []
        for cmd, done in cmds:
            if cmd[0] == "set":
                _, d, mode, ms = cmd
                was = self.modes[d][0]
                self.modes[d] = (mode, ms)
                if was == "blackhole" and mode != "blackhole" and self.close_on_heal:
                    for conn in list(self._conns):
                        if any(p.dropped for p in conn.pipes.values()):
                            self._drop(conn)
            elif cmd[0] == "reset":
                for conn in list(self._conns):
                    self._drop(conn)
            elif cmd[0] == "stop":
                self._stopping = True
            done.set()

    def _accept(self):
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        try:  # loopback: a refusal is immediate, so a blocking connect is fine
            target = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
        except OSError:
            self.stats["refused"] += 1
            client.close()
            return
        for s in (client, target):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.stats["accepted"] += 1
        with self._lock:
            self._conns.append(_Conn(client, target))

    def _read(self, conn, sock):
        if conn.closed:
            return
        d = TO_TARGET if sock is conn.client else TO_CLIENT
        pipe = conn.pipes[d]
        try:
            data = sock.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        mode, ms = self.modes[d]
        if mode == "blackhole":
            pipe.dropped += len(data)
            self.stats[f"dropped_{d}"] += len(data)
            return
        due = time.monotonic() + (ms / 1000 if mode == "slow" else 0)
        pipe.queue.append([due, data])
        pipe.queued += len(data)

    def _flush(self, conn):
        now = time.monotonic()
        for d, pipe in conn.pipes.items():
            if self.modes[d][0] == "stall":
                continue
            while pipe.queue and pipe.queue[0][0] <= now:
                chunk = pipe.queue[0]
                try:
                    n = pipe.dst.send(chunk[1])
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN,):
                        self._drop(conn)
                        return
                    break
                self.stats[f"bytes_{d}"] += n
                pipe.queued -= n
                if n < len(chunk[1]):
                    chunk[1] = chunk[1][n:]
                    break
                pipe.queue.popleft()

    def _drop(self, conn):
        if conn.closed:
            return
        conn.closed = True
        self.stats["closed"] += 1
        for s in (conn.client, conn.target):
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError):
                pass
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
            s.close()  # linger 0: an RST, so the peer's ZeroMQ notices at once
        with self._lock:
            self._conns.remove(conn)

    def _interest(self):
        """(Re)registers each socket for reading while its direction has
        room, and for writing while the other direction has bytes due."""
        now = time.monotonic()
        for conn in self._conns:
            for sock, out in ((conn.client, TO_TARGET), (conn.target, TO_CLIENT)):
                into = TO_CLIENT if out == TO_TARGET else TO_TARGET
                ev = 0
                if conn.pipes[out].queued < CAP:
                    ev |= selectors.EVENT_READ
                pin = conn.pipes[into]
                if (pin.queue and pin.queue[0][0] <= now
                        and self.modes[into][0] != "stall"):
                    ev |= selectors.EVENT_WRITE
                try:
                    key = self._sel.get_key(sock)
                except KeyError:
                    key = None
                if ev == 0:
                    if key:
                        self._sel.unregister(sock)
                elif key is None:
                    self._sel.register(sock, ev, (conn, sock))
                elif key.events != ev:
                    self._sel.modify(sock, ev, (conn, sock))

    def _timeout(self):
        """Until the next slow chunk is due (bounded, so commands and new
        deadlines are never waited on long)."""
        now = time.monotonic()
        t = 0.2
        for conn in self._conns:
            for d, p in conn.pipes.items():
                if p.queue and self.modes[d][0] != "stall":
                    t = min(t, max(0.0, p.queue[0][0] - now))
        return t

    def __repr__(self):
        return f"<Relay {self.name} :{self.port}->{self.target_port} {self.modes}>"
