"""One client connection: read frames, serve them in order, write responses.

Kafka serves one request per connection at a time and answers in request order;
clients pipeline by sending ahead, which the frame reader buffers. Serving in
order also keeps a producer's pipelined batches in sequence.

On the asyncio backend a plaintext connection is served through its transport directly
(:class:`_LeanProtocol`): bytes go into the frame reader as they arrive and the task wakes
once per request; a TLS connection reads and writes through anyio's TLS stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSAttribute, TLSStream

from kbroker.codec import FrameReader, FrameTooLarge
from kbroker.handlers.api import BrokerServices, Session
from kbroker.security.acl import canonical_host
from kbroker.security.listener import ListenerSecurity
from kbroker.server.dispatch import CloseConnection, ResponseParts, describe_request, dispatch
from kbroker.server.intercept import Interceptors
from kbroker.server.limits import RequestMemory

log = logging.getLogger(__name__)
_READ_SIZE = 256 * 1024
_ANYIO_ASYNCIO = "anyio._backends._asyncio"
_API = struct.Struct(">hh")
#: How long a connection whose login failed waits for the client to hang up after the answer.
_FAILED_LOGIN_LINGER_S = 1.0
#: Exceptions that are not a fault of the connection: they stop the task, as they should.
_PASS_THROUGH: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, GeneratorExit)
#: Seconds a client has to complete the TLS handshake (or connections.max.idle.ms if shorter).
TLS_HANDSHAKE_TIMEOUT = 10.0
#: Over TLS, a response goes out in writes of about this size (each one is encrypted into
#: a buffer of its own: writing a large response whole would copy it twice at once).
_TLS_WRITE = 256 * 1024
#: OpenSSL's reasons for a handshake that met something other than TLS.
_NOT_TLS = ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST", "UNKNOWN_PROTOCOL",
            "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNEXPECTED_RECORD", "RECORD_LENGTH_MISMATCH")


class _LeanProtocol(asyncio.Protocol):
    """The protocol of a plaintext connection's transport once :class:`Connection` takes it
    over from anyio's stream: received bytes go straight into the frame reader, and the
    connection's task is woken only when a whole frame may be buffered (or on end of
    stream, an error, idleness or shutdown). Reading stays enabled between requests, so a
    request costs no pause/resume of the socket; it pauses for backpressure only (the
    request memory budget, unserved bytes piling up while requests are served, a mute).
    Writes go to the transport at once; the task waits only while the transport is paused."""

    def __init__(self, conn: Connection, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.conn = conn
        self.transport = transport
        self.loop = loop
        #: Resolved when a whole frame may be buffered (True) or the connection is to close (False).
        self.waiter: asyncio.Future[bool] | None = None
        #: Resolved when the paused transport can take writes again, or the connection is lost.
        self.drain: asyncio.Future[None] | None = None
        self.write_paused = False
        self.reading = True
        self.eof = False
        self.lost = False
        self.error: BaseException | None = None
        #: After a failed login: received bytes are dropped, only the end of stream matters.
        self.discard = False
        #: Loop time of the last bytes received or of the last wait for a request begun.
        self.active = loop.time()
        self.idle_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        """Feed the frame reader; wake the task once a whole frame may be there; pause
        reading when the budget or the unserved bytes say so."""
        if self.discard:
            return
        conn = self.conn
        reader = conn.reader
        reader.feed(data)
        if conn.busy and not conn._outside_budget():
            # The request being served still holds its bytes (given back once it is served):
            # these come on top.
            conn.memory.take(len(data))
            conn._held += len(data)
        else:
            conn._account()
        self.active = self.loop.time()
        size = reader.frame_size
        if size < 0 or reader.buffered >= 4 + size:
            self.wake(True)
        if not conn._room():
            self.pause()

    def eof_received(self) -> bool:
        """Keep the transport open for the responses still due; the task closes it."""
        self.eof = True
        self.wake(True)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        self.wake(True)
        self._release_drain()
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._release_drain()

    def _release_drain(self) -> None:
        """Wake the task waiting in :meth:`drained`, if one is."""
        drain = self.drain
        if drain is not None:
            self.drain = None
            if not drain.done():
                drain.set_result(None)

    def wake(self, more: bool) -> None:
        """Wake the task waiting for a request: ``more`` False tells it to close."""
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(more)

    def pause(self) -> None:
        if self.reading:
            self.reading = False
            if not self.lost:
                self.transport.pause_reading()

    def resume(self) -> None:
        if not self.reading:
            self.reading = True
            if not self.lost:
                self.transport.resume_reading()

    def write(self, parts: ResponseParts) -> None:
        """Hand a response to the transport (it writes what the socket takes at once)."""
        if self.lost:
            raise anyio.BrokenResourceError from self.error
        try:
            if len(parts) == 1:
                self.transport.write(parts[0])
            else:
                self.transport.writelines(parts)
        except RuntimeError as e:  # the transport is closed: as anyio's send reports it
            raise anyio.BrokenResourceError from e

    async def drained(self) -> None:
        """Wait while the transport is paused (the client does not read its responses)."""
        while self.write_paused and not self.lost:
            if self.drain is None:
                self.drain = self.loop.create_future()
            await self.drain
        if self.lost:
            raise anyio.BrokenResourceError from self.error

    def watch_idle(self, idle_seconds: float) -> None:
        """Arm the connection's one idle timer to fire when the connection can have idled out,
        unless it is armed to fire by then (it re-arms itself lazily)."""
        due = self.active + idle_seconds
        timer = self.idle_timer
        if timer is not None:
            if timer.when() <= due:
                return
            timer.cancel()  # armed during a wait for the budget: later than this wait ends
            self.idle_timer = None
        if not self.lost:
            self.idle_timer = self.loop.call_at(due, self._idle_check, idle_seconds)

    def _idle_check(self, idle_seconds: float) -> None:
        """connections.max.idle.ms: close a connection that waited for a request that long."""
        self.idle_timer = None
        if self.lost:
            return
        now = self.loop.time()
        if self.waiter is not None and now - self.active >= idle_seconds:
            self.conn._idled = True
            self.wake(False)
            return
        # Busy serving, or active since: look again when the idle time can have passed.
        due = self.active + idle_seconds if self.waiter is not None else now + idle_seconds
        self.idle_timer = self.loop.call_at(due, self._idle_check, idle_seconds)


class Connection:
    """The loop serving one socket."""

    def __init__(self, services: BrokerServices, stream: ByteStream, security: ListenerSecurity, *,
                 memory: RequestMemory, stopping: Callable[[], bool],
                 interceptors: Interceptors | None = None) -> None:
        """``security`` is the listener's; ``memory`` is the request budget shared by every
        connection; ``stopping`` says whether the broker is shutting down (the loop then
        takes no further request); ``interceptors`` wrap the serving of every request."""
        self.services = services
        self.interceptors = interceptors
        self.security = security
        self.memory = memory
        self._stopping = stopping
        #: The socket; the TLS stream over it once the handshake is done (TLS listeners).
        self.stream: ByteStream = stream
        host, port = peer_address(stream)
        self.session = Session(listener=security.name, client_host=host, client_port=port,
                               security_protocol=security.protocol)
        self.busy = False
        #: (API key, version) of the request being served, for the log line if it fails.
        self.serving: tuple[int, int] | None = None
        self._idle_scope: anyio.CancelScope | None = None
        self._max_frame = services.config.socket_request_max_bytes
        self.reader = FrameReader(self._max_frame)
        if security.new_authenticator is not None:
            # A SASL listener: nothing but the SASL exchange until the client authenticates,
            # and no frame larger than sasl.server.max.receive.size meanwhile.
            self.session.sasl = security.new_authenticator(host, port)
            self.session.authenticated = False
            self._bound_frames()
        #: Bytes of the broker's request memory budget this connection holds.
        self._held = 0
        #: Whether the request being read was admitted in full (see RequestMemory).
        self._admitted = False
        self._idle_seconds = int(services.config.get("connections.max.idle.ms")) / 1000
        #: The protocol of a plaintext transport taken over from anyio's stream (see _take_over).
        self._lean: _LeanProtocol | None = None
        #: Whether the lean path found the connection idle for connections.max.idle.ms.
        self._idled = False

    def close_when_idle(self) -> None:
        """Shutdown: end the loop now if idle, else after the request in flight."""
        if self._idle_scope is not None:
            self._idle_scope.cancel()
        if self._lean is not None:
            self._lean.wake(False)

    def _take_over(self) -> None:
        """On the asyncio backend, serve a plaintext socket through its transport directly
        (see :class:`_LeanProtocol`) instead of through anyio's stream, whose every receive
        pauses and resumes reading and arms a timer, and every send yields to the loop."""
        stream = self.stream
        if type(stream).__module__ != _ANYIO_ASYNCIO:
            return
        transport: Any = getattr(stream, "_transport", None)
        old: Any = getattr(stream, "_protocol", None)
        received = getattr(old, "read_queue", None)
        if transport is None or received is None or not hasattr(transport, "set_protocol") or transport.is_closing():
            return  # not the transport and protocol this was written for: the stream serves
        lean = _LeanProtocol(self, transport, asyncio.get_running_loop())
        transport.set_protocol(lean)
        self._lean = lean
        # What anyio's protocol received before the take-over comes first.
        for chunk in received:
            self.reader.feed(chunk)
        received.clear()
        self._account()
        lean.eof = bool(getattr(old, "is_at_eof", False))
        if getattr(old, "exception", None) is not None:
            lean.lost, lean.error = True, old.exception
        lean.reading = transport.is_reading()
        lean.resume()

    async def run(self) -> None:
        """Serve the connection until the client closes it, it idles out, or the broker stops."""
        reader = self.reader
        try:
            if self.security.ssl_context is not None:
                if not await self._start_tls(self.security.ssl_context):
                    return
            else:
                self._take_over()
            stream = self.stream
            lean = self._lean
            receive = self._receive if lean is None else self._fill
            while not self._stopping():
                frame = reader.next_frame()
                if frame is None:
                    if not await receive():
                        return
                    continue
                self.busy = True
                sasl = self.session.sasl
                if sasl is not None and sasl.raw_tokens:
                    try:
                        if not await self._raw_token(frame):
                            return
                    finally:
                        self.busy = False
                    self._bound_frames()
                    self._account()
                    continue
                self.serving = _API.unpack_from(frame) if len(frame) >= 4 else (-1, -1)
                try:
                    response = await dispatch(self.services, self.session, frame, self.interceptors)
                    # Drop the request before sending: nothing of it is needed any more.
                    frame = None
                    if sasl is not None and sasl.failed:
                        await self._fail_authentication(response)
                        return
                    if response is not None:
                        if lean is None:
                            await send_parts(stream, response)
                        else:  # as _send, without a coroutine per response
                            lean.write(response)
                            if lean.write_paused:
                                await lean.drained()
                    # And the response (a fetch answer can be tens of MB) before waiting
                    # for the next request, so two never coexist.
                    response = None
                finally:
                    self.busy = False
                self.serving = None
                if sasl is not None:
                    self._bound_frames()
                self._account()  # the served request's bytes go back to the budget
                if self.session.throttle_ms > 0:
                    await self._mute()
        except (FrameTooLarge, CloseConnection) as e:
            log.warning("closing connection from %s:%d: %s", self.session.client_host,
                        self.session.client_port, e)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
            pass
        except ssl.SSLError as e:  # a TLS record the client garbled, or its alert
            log.info("closing connection from %s:%d: TLS error: %s", self.session.client_host,
                     self.session.client_port, _handshake_failure(e))
        except BaseException as e:
            # A fault in serving one request closes this connection only; the broker serves on.
            if isinstance(e, (*_PASS_THROUGH, anyio.get_cancelled_exc_class())):
                raise
            self._log_failure(e)
        finally:
            self.memory.give(self._held, admitted=self._admitted)
            self._held, self._admitted = 0, False
            if self._lean is not None and self._lean.idle_timer is not None:
                self._lean.idle_timer.cancel()
                self._lean.idle_timer = None
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _start_tls(self, context: ssl.SSLContext) -> bool:
        """The TLS handshake, within TLS_HANDSHAKE_TIMEOUT; on success the connection reads and
        writes through TLS and, on SSL listeners, has the principal of the client's certificate.
        False when the handshake failed, timed out or the broker is stopping."""
        session = self.session
        where = f"{session.client_host}:{session.client_port}"
        timeout = min(TLS_HANDSHAKE_TIMEOUT, self._idle_seconds)
        failure: str | None = None
        with anyio.CancelScope(deadline=anyio.current_time() + timeout) as scope:
            self._idle_scope = scope  # shutdown ends a handshake in progress too
            try:
                tls = await tls_handshake(self.stream, context)
            except ssl.SSLError as e:
                failure = _handshake_failure(e)
            except anyio.EndOfStream:
                # A port probe or health check, most likely: worth a debug line only.
                log.debug("connection from %s on listener %s closed during the TLS handshake", where,
                          session.listener)
                self._idle_scope = None
                return False
            except (anyio.BrokenResourceError, OSError) as e:
                failure = f"{(e.__cause__ or e)}"
        self._idle_scope = None
        if scope.cancelled_caught:
            if not self._stopping():
                log.info("closing connection from %s on listener %s: TLS handshake not done within %g s",
                         where, session.listener, timeout)
            return False
        if failure is not None:
            # As Kafka's "Failed authentication with ... (SSL handshake failed)": one line, no trace.
            log.info("closing connection from %s on listener %s: TLS handshake failed: %s", where,
                     session.listener, failure)
            return False
        self.stream = tls
        if self.security.ssl_principal is not None:
            try:
                session.principal = self.security.ssl_principal(tls.extra(TLSAttribute.peer_certificate_binary))
            except (ValueError, IndexError) as e:  # no ssl.principal.mapping.rules rule applies
                log.info("closing connection from %s on listener %s: no principal for the client "
                         "certificate: %s", where, session.listener, e)
                return False
        log.debug("TLS connection from %s on listener %s: %s, %s, principal %s", where, session.listener,
                  tls.extra(TLSAttribute.tls_version), tls.extra(TLSAttribute.cipher)[0], session.principal)
        return True

    def _bound_frames(self) -> None:
        """While a SASL connection authenticates, frames are bounded by the SASL receive
        size (as Kafka reads them), so an unauthenticated client cannot make the broker
        buffer a 100 MB request."""
        sasl = self.session.sasl
        limit = self._max_frame
        if sasl.authenticating:
            limit = min(limit, sasl.max_receive_size)
        self.reader.max_frame_size = limit

    async def _raw_token(self, frame: bytes) -> bool:
        """Serve a raw SASL token (after SaslHandshake v0): the challenge goes back
        size-prefixed. False when authentication failed: the connection then closes after
        the failure delay, answering nothing, as Kafka does."""
        sasl = self.session.sasl
        challenge = sasl.raw_token(bytes(frame))
        if challenge is None:
            await self._fail_authentication(None)
            return False
        if sasl.principal is not None and not sasl.authenticating:
            self.session.principal = sasl.principal
            self.session.authenticated = True
        await self._send([struct.pack(">i", len(challenge)), challenge])
        return True

    async def _send(self, parts: ResponseParts) -> None:
        """Write a response, on whichever path the connection is served."""
        lean = self._lean
        if lean is None:
            await send_parts(self.stream, parts)
            return
        lean.write(parts)
        if lean.write_paused:
            await lean.drained()

    async def _fail_authentication(self, response: ResponseParts | None) -> None:
        """After a failed login: wait connection.failed.authentication.delay.ms (this
        connection only), send the failure response if any, and let the connection close.
        The failure was logged when it happened."""
        await anyio.sleep(self.session.sasl.failure_delay_s)
        if response is None:
            return
        with anyio.move_on_after(_FAILED_LOGIN_LINGER_S):
            await self._send(response)
            # Let the client read the answer and hang up first: some clients (kafka-python)
            # drop an answer that arrives together with the end of the stream. A client
            # that does not hang up is closed after the linger time all the same.
            lean = self._lean
            if lean is None:
                while len(await self.stream.receive(_READ_SIZE)) > 0:
                    pass
                return
            lean.discard = True
            lean.resume()
            while not (lean.eof or lean.lost):
                lean.waiter = lean.loop.create_future()
                try:
                    await lean.waiter
                finally:
                    lean.waiter = None

    async def _mute(self) -> None:
        """A throttled client: read nothing for ``throttle_ms`` (KIP-219); shutdown ends it early."""
        if self._lean is not None:
            self._lean.pause()  # reading resumes when the connection next waits for a request
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
            if self._outside_budget():
                pass  # bounded by sasl.server.max.receive.size instead (see _outside_budget)
            elif size >= 0:
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
            self._log_idle_close()
            return False
        self.reader.feed(data)
        self._account()
        return True

    async def _fill(self) -> bool:
        """The lean path's :meth:`_receive`: wait until a whole frame may be buffered, within
        the memory budget; False when the connection was idle for ``connections.max.idle.ms``
        or is closed for shutdown. Raises EndOfStream or BrokenResourceError when the client
        closed the connection with no whole request left to serve."""
        lean = self._lean
        assert lean is not None
        reader = self.reader
        # The idle time counts from here (or from the last bytes received), a wait for the
        # budget included: once admitted, a stalled request gets no idle period of its own.
        lean.active = lean.loop.time()
        while True:
            if reader.frame_size < 0 and reader.buffered >= 4:
                return True  # bytes came in meanwhile: the frame may be whole
            if lean.lost:
                if lean.error is not None:
                    raise anyio.BrokenResourceError from lean.error
                raise anyio.EndOfStream
            if lean.eof:
                raise anyio.EndOfStream
            if not self._room():
                # Backpressure: leave further bytes in the socket until the budget has room.
                lean.pause()
                if not await self._wait_for_memory(lean.active + self._idle_seconds):
                    return False
                continue
            lean.resume()
            lean.watch_idle(self._idle_seconds)
            waiter = lean.waiter = lean.loop.create_future()
            try:
                more = await waiter
            finally:
                lean.waiter = None
            if more:
                return True
            if self._idled:
                self._log_idle_close()
            return False

    def _room(self) -> bool:
        """Whether the connection may read more bytes now, as :meth:`_receive` decides before
        each read: the request being read is admitted in full once its size is known
        (False while the budget has no room for it); otherwise reading waits while the
        budget is spent, or while a socket read's worth of bytes waits to be served."""
        reader = self.reader
        size = reader.frame_size
        if size >= 0 and reader.buffered < 4 + size:  # reading a request
            if self._outside_budget():
                return True
            want = 4 + size
            if not self._admitted and want > self._held:
                if not self.memory.try_admit(want - self._held):
                    return False
                self._held = want
                self._admitted = True
            return True
        if reader.buffered >= _READ_SIZE:
            return False
        return self._outside_budget() or not self.memory.exhausted

    async def _wait_for_memory(self, deadline: float) -> bool:
        """Wait until the budget has room again; False when the connection idled meanwhile
        (``deadline``, in loop time, passed) or is closed for shutdown."""
        with anyio.CancelScope(deadline=deadline) as scope:
            self._idle_scope = scope
            await self.memory.wait()
        self._idle_scope = None
        if scope.cancelled_caught:
            self._log_idle_close()
            return False
        return True

    def _log_idle_close(self) -> None:
        """The debug line of a connection closed for ``connections.max.idle.ms`` (not at shutdown)."""
        if not self._stopping():
            log.debug("closing connection from %s:%d: idle for connections.max.idle.ms",
                      self.session.client_host, self.session.client_port)

    def _outside_budget(self) -> bool:
        """Whether the connection is authenticating: as Kafka reads SASL frames outside its
        memory pool, its bytes (at most one frame of sasl.server.max.receive.size) do not
        count against queued.max.request.bytes, so unauthenticated clients that announce
        large frames and stall cannot spend the budget and stop every other client."""
        sasl = self.session.sasl
        return sasl is not None and sasl.authenticating

    def _account(self) -> None:
        """Bring the bytes this connection holds of the budget in line with what it buffers
        (an admitted request in progress keeps its whole size)."""
        reader, memory = self.reader, self.memory
        if self._outside_budget():
            memory.give(self._held, admitted=self._admitted)
            self._held, self._admitted = 0, False
            return
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


async def tls_handshake(stream: ByteStream, context: ssl.SSLContext) -> TLSStream:
    """The server side of a TLS handshake on ``stream``, then the TLS stream over it.

    As anyio's ``TLSStream.wrap`` (no closing handshake: ``standard_compatible=False``), except
    that a failed handshake still sends the client OpenSSL's alert (unknown CA, certificate
    required, protocol version), so that the client can say what went wrong. Raises
    ``ssl.SSLError``, ``anyio.EndOfStream`` or ``anyio.BrokenResourceError``.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            if outgoing.pending:
                await stream.send(outgoing.read())
            try:
                incoming.write(await stream.receive())
            except anyio.EndOfStream:
                incoming.write_eof()  # do_handshake raises SSLEOFError next
        except ssl.SSLEOFError:
            raise anyio.EndOfStream from None
        except ssl.SSLError:
            if outgoing.pending:
                with anyio.move_on_after(1), contextlib.suppress(anyio.BrokenResourceError, OSError):
                    await stream.send(outgoing.read())  # the alert
            raise
    if outgoing.pending:
        await stream.send(outgoing.read())
    # TLSStream has no public constructor but wrap(), which would redo the handshake; its
    # dataclass fields are what wrap() fills. Bytes the client sent after its Finished stay
    # in ``incoming`` and are the stream's first to read.
    return TLSStream(transport_stream=stream, standard_compatible=False, _ssl_object=tls, _read_bio=incoming,
                     _write_bio=outgoing)


async def send_parts(stream: ByteStream, parts: ResponseParts) -> None:
    """Write a response's buffers with one vectored write where the transport allows,
    then wait, as ``send`` does, while the peer is not reading (flow control)."""
    # anyio streams take one buffer per send; the asyncio transport beneath takes several
    # at once (uvloop writes them with one writev).
    transport = getattr(stream, "_transport", None) if type(stream).__module__ == _ANYIO_ASYNCIO else None
    if len(parts) == 1 and transport is not None:
        await stream.send(parts[0])  # type: ignore[arg-type]
        return
    if transport is None:
        # A TLS stream (or another backend's): small buffers joined, large ones in slices,
        # so that no write copies much more than _TLS_WRITE bytes at once.
        await _send_in_slices(stream, parts)
        return
    try:
        transport.writelines(parts)
    except RuntimeError as e:  # the transport is closed: as anyio's send reports it
        raise anyio.BrokenResourceError from e
    # An empty send writes nothing; it waits while the transport is paused and raises if
    # the connection broke meanwhile.
    await stream.send(b"")


async def _send_in_slices(stream: ByteStream, parts: ResponseParts) -> None:
    """Send ``parts`` in order, joining small ones and slicing large ones (no copy) to _TLS_WRITE."""
    pending: list[bytes | bytearray | memoryview] = []
    size = 0
    for part in parts:
        length = part.nbytes if isinstance(part, memoryview) else len(part)
        if size + length <= _TLS_WRITE:
            pending.append(part)
            size += length
            continue
        if pending:
            await stream.send(pending[0] if len(pending) == 1 else b"".join(pending))  # type: ignore[arg-type]
            pending, size = [], 0
        view = memoryview(part).cast("B")
        while len(view) > _TLS_WRITE:
            await stream.send(view[:_TLS_WRITE])  # type: ignore[arg-type]
            view = view[_TLS_WRITE:]
        pending, size = [view], len(view)
    if pending:
        await stream.send(pending[0] if len(pending) == 1 else b"".join(pending))  # type: ignore[arg-type]


def _handshake_failure(e: ssl.SSLError) -> str:
    """What went wrong in a handshake, in a few words."""
    reason = str(getattr(e, "reason", None) or e)
    verify = getattr(e, "verify_message", None)
    if verify:
        return f"the client certificate was refused: {verify}"
    if reason in _NOT_TLS:
        return f"not a TLS client ({reason.lower().replace('_', ' ')}; a plaintext client on the TLS port?)"
    return reason.lower().replace("_", " ")


def peer_address(stream: ByteStream) -> tuple[str, int]:
    """The client's (host, port), or ("unknown", -1) where the transport has none.

    An IPv4 client of a dual-stack socket (a listener on every interface) is named by its
    IPv4 address, not ``::ffff:a.b.c.d``, as Kafka names it: ACL hosts, logs and
    DescribeGroups' client hosts then speak of the address the client has."""
    try:
        addr = stream.extra(anyio.abc.SocketAttribute.remote_address)
        if isinstance(addr, tuple):
            return canonical_host(str(addr[0])), int(addr[1])
    except Exception:  # pragma: no cover - unix sockets and exotic transports
        pass
    return "unknown", -1
