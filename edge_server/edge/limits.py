"""What all of the edge's WebSocket connections share: how many may be open, and how many
reply bytes may wait for clients that are slow to read them.

A reply counts as queued from the moment it is built until it is handed to the socket.
A client that never reads stops the socket from taking more, so its replies pile up
here; without a budget, ten such clients asking for 4 MiB downlink probes pinned 576 MB.
Only probe filler (a PING's `reply_bytes`) is ever refused for want of room, with ERROR
`busy`: everything else is small and bounded by `max_in_flight` per connection. A
connection always gets one probe through when nothing else of its own is queued. Past
the budget, what a non-reading client pins is its socket's buffer (one reply), until the
WebSocket keepalive (`read_timeout_s`) closes it.
"""

from __future__ import annotations


class ConnectionLimits:
    def __init__(self, max_connections: int, max_queued_bytes: int, per_connection_bytes: int) -> None:
        """max_queued_bytes: for all connections together; per_connection_bytes: for one
        (bytes of replies built and not yet sent)."""
        self.max_connections, self.max_queued_bytes = max_connections, max_queued_bytes
        self.per_connection_bytes = per_connection_bytes
        self.connections = 0
        self.queued_bytes = 0

    def admit(self) -> bool:
        """Count a new connection in, unless the edge already holds max_connections."""
        if self.connections >= self.max_connections:
            return False
        self.connections += 1
        return True

    def leave(self) -> None:
        self.connections -= 1

    def room_for(self, size: int, held: int) -> bool:
        """Whether a reply of `size` bytes may join the queue of a connection that holds
        `held` bytes already (it is hold()'s caller that then counts it in)."""
        if self.queued_bytes + size > self.max_queued_bytes:
            return False
        return held == 0 or held + size <= self.per_connection_bytes

    def hold(self, size: int) -> None:
        self.queued_bytes += size

    def release(self, size: int) -> None:
        self.queued_bytes -= size
