"""The sockets of `drivesim serve`: the RPC port (msgpack-rpc as rpclib speaks it: request
`[0, id, method, params]`, reply `[1, id, error, result]`, notification `[2, method, params]`) and
the streaming port next to it (a client sends a 4-byte stream id, then reads `[u32 size][payload]`
messages).

One thread and one selector: requests are answered in order, the simulation ticks between them,
and writes never block, so a slow, broken or hostile client only ever costs its own connection.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from itertools import islice

import msgpack

from ..errors import DrivesimError
from .methods import dispatch
from .protocol import MAX_LIST
from .simulation import Simulation

log = logging.getLogger(__name__)

RECV = 1 << 16
MAX_REQUEST = 4 << 20  # bytes: no request of the CARLA client comes near this
MAX_BACKLOG = 64 << 20  # bytes queued for one stream connection before its messages are dropped
SUBSCRIBE_WAIT = 1.0  # seconds a tick waits for the subscriptions of sensors just listened to
STREAM_SNDBUF = 4 << 20
LENGTH = struct.Struct("<I")


class Connection:
    """A non-blocking socket with an output queue of buffers (sent with scatter-gather)."""

    def __init__(self, server: Server, sock: socket.socket):
        self.server, self.sock = server, sock
        self.out: deque[memoryview] = deque()
        self.queued = 0
        self.closed = False
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server.selector.register(sock, selectors.EVENT_READ, self)

    def send(self, buffers: list) -> None:
        for b in buffers:
            view = memoryview(b).cast("B")
            if len(view):
                self.out.append(view)
                self.queued += len(view)
        self.flush()

    def flush(self) -> None:
        while self.out and not self.closed:
            try:
                sent = self.sock.sendmsg(list(islice(self.out, 64)))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.close()
                return
            self.queued -= sent
            while sent:
                head = self.out[0]
                if sent >= len(head):
                    sent -= len(head)
                    self.out.popleft()
                else:
                    self.out[0] = head[sent:]
                    sent = 0
        if not self.closed:
            want = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.out else 0)
            self.server.selector.modify(self.sock, want, self)

    def on_event(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self.flush()
        if mask & selectors.EVENT_READ and not self.closed:
            try:
                data = self.sock.recv(RECV)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.close()
            else:
                self.on_data(data)

    def on_data(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.out.clear()
        self.server.selector.unregister(self.sock)
        self.sock.close()


class RpcConnection(Connection):
    """One client's RPC connection: every message is checked before use; a byte stream that is
    not msgpack, or a message that is not a request, closes the connection."""

    def __init__(self, server: Server, sock: socket.socket):
        super().__init__(server, sock)
        server.clients.add(self)
        self.unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_REQUEST,
                                         max_array_len=MAX_LIST, max_map_len=1024)

    def on_data(self, data: bytes) -> None:
        try:
            self.unpacker.feed(data)
            for message in self.unpacker:
                self.handle(message)
                if self.closed:
                    return
        except (ValueError, msgpack.UnpackException) as e:
            log.info("closing an RPC connection that sent malformed msgpack (%s)", e)
            self.close()

    def handle(self, message: object) -> None:
        if isinstance(message, list) and len(message) == 4 and message[0] == 0 and isinstance(
                message[1], int) and not isinstance(message[1], bool) and 0 <= message[1] < 2**32:
            if message[2] == "tick_cue":
                self.server.await_subscriptions()
            response = dispatch(self.server.sim, message[2], message[3])
            self.send([msgpack.packb([1, message[1], None, response], use_bin_type=True)])
            self.server.after_call()
        elif isinstance(message, list) and len(message) == 3 and message[0] == 2:
            dispatch(self.server.sim, message[1], message[2])
            self.server.after_call()
        else:
            log.info("closing an RPC connection that sent a message that is no request")
            self.close()

    def close(self) -> None:
        self.server.clients.discard(self)
        super().close()


class StreamConnection(Connection):
    """A subscription: the client's first 4 bytes name the stream; then it only reads."""

    def __init__(self, server: Server, sock: socket.socket):
        super().__init__(server, sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
        self.head = b""
        self.stream: int | None = None
        self.dropped = 0
        server.handshaking.add(self)

    def on_data(self, data: bytes) -> None:
        if self.stream is not None:
            return  # the client has nothing more to say; ignore it
        self.head += data
        if len(self.head) < 4:
            return
        stream = LENGTH.unpack_from(self.head)[0]
        if len(self.head) > 4 or not self.server.sim.stream_exists(stream):
            log.info("closing a stream connection that asked for unknown stream %d", stream)
            self.close()
            return
        self.stream = stream
        self.server.handshaking.discard(self)
        self.server.subscribe(self)

    def publish(self, size: int, buffers: list) -> None:
        if self.queued > MAX_BACKLOG:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("stream %s: the client does not keep up; dropping messages",
                            self.stream)
            return
        self.send([LENGTH.pack(size), *buffers])

    def close(self) -> None:
        self.server.handshaking.discard(self)
        if not self.closed and self.stream is not None:
            self.server.unsubscribe(self)
        super().close()


class Server:
    """Binds the RPC port and the streaming port (RPC + 1) and serves them until interrupted."""

    def __init__(self, sim_factory: Callable[[int], Simulation], host: str, port: int):
        self.selector = selectors.DefaultSelector()
        self.rpc, self.streaming = _bind_pair(host, port)
        self.port = self.rpc.getsockname()[1]
        self.stream_port = self.streaming.getsockname()[1]
        self.sim = sim_factory(self.stream_port)
        self.sim.emit = self.deliver
        self.subscribers: dict[int, list[StreamConnection]] = {}
        self.handshaking: set[StreamConnection] = set()
        self.clients: set[RpcConnection] = set()
        self.selector.register(self.rpc, selectors.EVENT_READ, RpcConnection)
        self.selector.register(self.streaming, selectors.EVENT_READ, StreamConnection)

    def serve_forever(self) -> None:
        """Answer clients and tick; returns only by an exception (KeyboardInterrupt to stop).
        Nobody connected, nobody can tell whether the world ticks: it waits."""
        while True:
            watched = bool(self.clients or self.subscribers)
            for key, mask in self.selector.select(self.sim.due_in() if watched else None):
                try:
                    self._handle(key, mask)
                except Exception:  # noqa: BLE001 - a bug must cost one connection, not the server
                    log.exception("closing a connection after an internal error")
                    if isinstance(key.data, Connection):
                        key.data.close()
            if self.clients or self.subscribers:
                self._tick_if_due()

    def _handle(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.fileobj in (self.rpc, self.streaming):
            self._accept(key.fileobj, key.data)
        else:
            key.data.on_event(mask)

    def _tick_if_due(self) -> None:
        try:
            self.sim.tick_if_due()
        except Exception:  # noqa: BLE001 - keep serving; the next tick may go through
            log.exception("a tick of its own failed")

    def _accept(self, listener: socket.socket, kind: type[Connection]) -> None:
        try:
            sock, addr = listener.accept()
        except OSError:
            return
        log.debug("%s connection from %s", kind.__name__, addr)
        kind(self, sock)

    def await_subscriptions(self) -> None:
        """Before a tick: let the stream connections of sensors that a client has just asked a
        token for arrive (the client connects in the background), so that their first frame
        is not lost. Waits at most SUBSCRIBE_WAIT seconds."""
        deadline = time.monotonic() + SUBSCRIBE_WAIT
        while self.sim.expecting(SUBSCRIBE_WAIT) and time.monotonic() < deadline:
            with selectors.DefaultSelector() as waiting:
                waiting.register(self.streaming, selectors.EVENT_READ)
                for conn in self.handshaking:
                    waiting.register(conn.sock, selectors.EVENT_READ, conn)
                for key, _ in waiting.select(max(0.0, deadline - time.monotonic())):
                    if key.data is None:
                        self._accept(self.streaming, StreamConnection)
                    else:
                        key.data.on_event(selectors.EVENT_READ)

    def after_call(self) -> None:
        """End the subscriptions that lost their stream (a destroyed sensor)."""
        for stream in [s for s in self.subscribers if not self.sim.stream_exists(s)]:
            for conn in list(self.subscribers.get(stream, ())):
                conn.close()

    def deliver(self, stream: int, buffers: list) -> None:
        """Send one stream message to every subscriber of the stream, now."""
        conns = self.subscribers.get(stream)
        if conns:
            size = sum(memoryview(b).nbytes for b in buffers)
            for conn in conns:
                conn.publish(size, buffers)

    def subscribe(self, conn: StreamConnection) -> None:
        self.subscribers.setdefault(conn.stream, []).append(conn)
        self.sim.watched[conn.stream] += 1
        self.sim.awaited.pop(conn.stream, None)

    def unsubscribe(self, conn: StreamConnection) -> None:
        conns = self.subscribers.get(conn.stream, [])
        if conn in conns:
            conns.remove(conn)
            self.sim.watched[conn.stream] -= 1
        if not conns:
            self.subscribers.pop(conn.stream, None)
            self.sim.watched.pop(conn.stream, None)

    def close(self) -> None:
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """Listening sockets on `port` and `port + 1` (port 0: any free pair)."""
    tries = 50 if port == 0 else 1
    for _ in range(tries):
        rpc = _listen(host, port, port == 0)
        rpc_port = rpc.getsockname()[1]
        try:
            return rpc, _listen(host, rpc_port + 1, port == 0)
        except DrivesimError:
            rpc.close()
            if port != 0:
                raise
    raise DrivesimError(f"found no free pair of ports on {host}; pass --port")


def _listen(host: str, port: int, quiet: bool) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise DrivesimError(f"--host {host}: cannot resolve it ({e.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        if quiet or e.errno != errno.EADDRINUSE:
            raise DrivesimError(f"cannot listen on {host}:{port} ({e.strerror})") from None
        raise DrivesimError(f"port {port} on {host} is in use (another CARLA server or drivesim "
                            "serve?); drivesim serve needs --port P and P + 1 free: pick another "
                            "--port, or 0 for any free pair") from None
    sock.listen(64)
    sock.setblocking(False)
    return sock
