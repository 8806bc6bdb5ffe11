"""A TCP proxy on 127.0.0.1 that a test switches between forwarding and two kinds of failure.

``TcpProxy`` stands between the service and its database and plays the
network faults the fault-injection tests need:

- ``forward()``: relay bytes both ways (a healthy network).
- ``refuse()``: close the listening socket, so new connections are refused,
  and reset every open one (a database that is down or restarting).
- ``blackhole()``: accept new connections but never connect them anywhere,
  and stop relaying on open ones; everything read is discarded and nothing
  is ever answered (a partition, or a server that hangs).

Leaving the blackhole resets the connections caught in it: bytes were
dropped on them, so their protocol state is lost, as when a middlebox
forgets a connection. An asyncio loop on a daemon thread does the relaying;
each switch returns once it is in effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from dataclasses import dataclass
from enum import StrEnum

_CHUNK = 64 * 1024


class Mode(StrEnum):
    """What the proxy does with connections."""

    FORWARD = "forward"
    REFUSE = "refuse"
    BLACKHOLE = "blackhole"


@dataclass(eq=False)
class _Link:
    """One client connection and, unless it was accepted into the blackhole, its upstream."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None
    blackholed: bool

    def reset(self) -> None:
        """Reset both sides and stop relaying."""
        # The pumps see their sockets end and return; cancelling them instead
        # trips asyncio's stream callbacks on Python 3.11.
        for writer in (self.client, self.upstream):
            if writer is not None:
                _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Relay 127.0.0.1:<port> to an upstream address, with faults switched on demand.

    Args:
        upstream_host: Where forwarded connections go.
        upstream_port: Its port.

    Use as a context manager, or call ``start()`` and ``close()``.
    """

    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.mode = Mode.FORWARD
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.AbstractServer | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="proxy")

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> TcpProxy:
        """Listen on a free port of 127.0.0.1, forwarding."""
        self._thread.start()
        self._call(self._listen())
        return self

    def forward(self) -> None:
        """Relay again; connections caught in the blackhole are reset."""
        self._call(self._switch(Mode.FORWARD))

    def refuse(self) -> None:
        """Refuse new connections and reset every open one."""
        self._call(self._switch(Mode.REFUSE))

    def blackhole(self) -> None:
        """Swallow everything, on new and open connections alike, and never answer."""
        self._call(self._switch(Mode.BLACKHOLE))

    def close(self) -> None:
        """Reset every connection, stop listening and stop the loop thread."""
        if not self._thread.is_alive():
            return
        self._call(self._shut_down())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    # -- on the loop thread ----------------------------------------------------

    def _call(self, coroutine) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shut_down(self) -> None:
        await self._switch(Mode.REFUSE)
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending, timeout=5)

    async def _switch(self, mode: Mode) -> None:
        previous, self.mode = self.mode, mode
        if mode is Mode.REFUSE:
            if self._server is not None:
                self._server.close()
                self._server = None
            for link in list(self._links):
                link.reset()
            self._links.clear()
            return
        if mode is Mode.BLACKHOLE:
            for link in self._links:
                link.blackholed = True
        else:
            for link in [link for link in self._links if link.blackholed]:
                link.reset()
                self._links.discard(link)
        if previous is Mode.REFUSE and self._server is None:
            await self._listen()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode is Mode.BLACKHOLE:
            link = _Link(client=writer, upstream=None, blackholed=True)
            self._links.add(link)
            await self._pump(reader, None, link, from_client=True)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), timeout=5
            )
        except (OSError, TimeoutError):
            _reset(writer)
            return
        # The mode may have changed while connecting.
        link = _Link(client=writer, upstream=up_writer, blackholed=self.mode is Mode.BLACKHOLE)
        if self.mode is Mode.REFUSE:
            link.reset()
            return
        self._links.add(link)
        # The loop keeps only weak references to tasks: hold this one until it ends.
        task = asyncio.create_task(self._pump(up_reader, writer, link, from_client=False))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await self._pump(reader, up_writer, link, from_client=True)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter | None,
        link: _Link,
        from_client: bool,
    ) -> None:
        """Copy one direction until it ends; in the blackhole, read and drop instead."""
        try:
            while data := await reader.read(_CHUNK):
                if writer is not None and not link.blackholed:
                    writer.write(data)
                    await writer.drain()
        except OSError:
            pass  # reset by a peer: end the link below
        if link.blackholed and not from_client:
            return  # the client must hear nothing, not even that the server left
        self._end(link)

    def _end(self, link: _Link) -> None:
        """Close both sides of a link whose one direction ended."""
        self._links.discard(link)
        for writer in (link.client, link.upstream):
            if writer is not None:
                writer.close()
