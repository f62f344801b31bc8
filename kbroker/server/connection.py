"""One client connection: read frames, serve them in order, write responses.

Kafka serves one request per connection at a time and answers in request order;
clients pipeline by sending ahead, which the frame reader buffers. Serving in
order also keeps a producer's pipelined batches in sequence.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

import anyio
from anyio.abc import SocketStream

from kbroker.codec import FrameReader, FrameTooLarge
from kbroker.handlers.api import BrokerServices, Session
from kbroker.security.listener import ListenerSecurity
from kbroker.server.dispatch import CloseConnection, ResponseParts, describe_request, dispatch
from kbroker.server.limits import RequestMemory

log = logging.getLogger(__name__)
_READ_SIZE = 256 * 1024
_ANYIO_ASYNCIO = "anyio._backends._asyncio"
_API = struct.Struct(">hh")
#: Exceptions that are not a fault of the connection: they stop the task, as they should.
_PASS_THROUGH: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, GeneratorExit)


class Connection:
    """The loop serving one socket."""

    def __init__(self, services: BrokerServices, stream: SocketStream, security: ListenerSecurity, *,
                 memory: RequestMemory, stopping: Callable[[], bool]) -> None:
        """``security`` is the listener's; ``memory`` is the request budget shared by every
        connection; ``stopping`` says whether the broker is shutting down (the loop then
        takes no further request)."""
        self.services = services
        self.security = security
        self.memory = memory
        self._stopping = stopping
        self.stream = stream
        host, port = peer_address(stream)
        self.session = Session(listener=security.name, client_host=host, client_port=port,
                               security_protocol=security.protocol)
        self.busy = False
        #: (API key, version) of the request being served, for the log line if it fails.
        self.serving: tuple[int, int] | None = None
        self._idle_scope: anyio.CancelScope | None = None
        self.reader = FrameReader(services.config.socket_request_max_bytes)
        #: Bytes of the broker's request memory budget this connection holds.
        self._held = 0
        #: Whether the request being read was admitted in full (see RequestMemory).
        self._admitted = False
        self._idle_seconds = int(services.config.get("connections.max.idle.ms")) / 1000

    def close_when_idle(self) -> None:
        """Shutdown: end the loop now if idle, else after the request in flight."""
        if self._idle_scope is not None:
            self._idle_scope.cancel()

    async def run(self) -> None:
        """Serve the connection until the client closes it, it idles out, or the broker stops."""
        reader = self.reader
        stream = self.stream
        try:
            while not self._stopping():
                frame = reader.next_frame()
                if frame is None:
                    if not await self._receive():
                        return
                    continue
                self.busy = True
                self.serving = _API.unpack_from(frame) if len(frame) >= 4 else (-1, -1)
                try:
                    response = await dispatch(self.services, self.session, frame)
                    # Drop the request before sending: nothing of it is needed any more.
                    frame = None
                    if response is not None:
                        await send_parts(stream, response)
                    # And the response (a fetch answer can be tens of MB) before waiting
                    # for the next request, so two never coexist.
                    response = None
                finally:
                    self.busy = False
                self.serving = None
                self._account()  # the served request's bytes go back to the budget
                if self.session.throttle_ms > 0:
                    await self._mute()
        except (FrameTooLarge, CloseConnection) as e:
            log.warning("closing connection from %s:%d: %s", self.session.client_host,
                        self.session.client_port, e)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
            pass
        except BaseException as e:
            # A fault in serving one request closes this connection only; the broker serves on.
            if isinstance(e, (*_PASS_THROUGH, anyio.get_cancelled_exc_class())):
                raise
            self._log_failure(e)
        finally:
            self.memory.give(self._held, admitted=self._admitted)
            self._held, self._admitted = 0, False
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def _mute(self) -> None:
        """A throttled client: read nothing for ``throttle_ms`` (KIP-219); shutdown ends it early."""
        with anyio.CancelScope(deadline=anyio.current_time() + self.session.throttle_ms / 1000) as scope:
            self._idle_scope = scope
            await anyio.sleep_forever()
        self._idle_scope = None
        self.session.throttle_ms = 0

    async def _receive(self) -> bool:
        """Read more request bytes within the memory budget; False when the connection
        was idle for ``connections.max.idle.ms`` or is closed for shutdown."""
        reader, memory = self.reader, self.memory
        with anyio.CancelScope(deadline=anyio.current_time() + self._idle_seconds) as scope:
            self._idle_scope = scope
            size = reader.frame_size
            if size >= 0:
                # As Kafka allocates a request's whole buffer: once admitted, a request can
                # always be read to its end, so requests in progress cannot starve each other.
                want = 4 + size
                if not self._admitted and want > self._held:
                    while not memory.try_admit(want - self._held):
                        await memory.wait()
                    self._held = want
                    self._admitted = True
            else:
                while memory.exhausted:  # backpressure: leave further bytes in the socket
                    await memory.wait()
            data = await self.stream.receive(_READ_SIZE)
        self._idle_scope = None
        if scope.cancelled_caught:
            if not self._stopping():
                log.debug("closing connection from %s:%d: idle for connections.max.idle.ms",
                          self.session.client_host, self.session.client_port)
            return False
        self.reader.feed(data)
        self._account()
        return True

    def _account(self) -> None:
        """Bring the bytes this connection holds of the budget in line with what it buffers
        (an admitted request in progress keeps its whole size)."""
        reader, memory = self.reader, self.memory
        held = reader.buffered
        size = reader.frame_size
        if self._admitted and size >= 0:
            held = max(held, 4 + size)  # still reading the admitted request
        if held > self._held:
            memory.take(held - self._held)
        else:
            done = self._admitted and size < 0  # the admitted request was served
            memory.give(self._held - held, admitted=done)
            if done:
                self._admitted = False
        self._held = held

    def _log_failure(self, e: BaseException) -> None:
        if self.serving is not None:
            what = describe_request(self.session, *self.serving)
        else:
            what = f"connection from {self.session.client_host}:{self.session.client_port}"
        log.error("closing connection: %s failed: %s: %s", what, type(e).__name__, e, exc_info=e)


async def send_parts(stream: SocketStream, parts: ResponseParts) -> None:
    """Write a response's buffers with one vectored write where the transport allows,
    then wait, as ``send`` does, while the peer is not reading (flow control)."""
    # anyio streams take one buffer per send; the asyncio transport beneath takes several
    # at once (uvloop writes them with one writev). Elsewhere join them: one copy, correct.
    transport = getattr(stream, "_transport", None) if type(stream).__module__ == _ANYIO_ASYNCIO else None
    if len(parts) == 1 or transport is None:
        await stream.send(parts[0] if len(parts) == 1 else b"".join(parts))  # type: ignore[arg-type]
        return
    try:
        transport.writelines(parts)
    except RuntimeError as e:  # the transport is closed: as anyio's send reports it
        raise anyio.BrokenResourceError from e
    # An empty send writes nothing; it waits while the transport is paused and raises if
    # the connection broke meanwhile.
    await stream.send(b"")


def peer_address(stream: SocketStream) -> tuple[str, int]:
    """The client's (host, port), or ("unknown", -1) where the transport has none."""
    try:
        addr = stream.extra(anyio.abc.SocketAttribute.remote_address)
        if isinstance(addr, tuple):
            return str(addr[0]), int(addr[1])
    except Exception:  # pragma: no cover - unix sockets and exotic transports
        pass
    return "unknown", -1
