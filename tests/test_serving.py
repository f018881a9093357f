"""The sockets the servers listen on (edge_server/serving.py)."""

from __future__ import annotations

import asyncio
import socket

from edge_server.serving import bind


def test_connections_accepted_on_a_bound_socket_send_without_nagle() -> None:
    """With Nagle's algorithm on, every response after the first on a kept-alive connection
    waited 40 ms for the client's delayed ACK (h11 writes a response's headers and body
    apart). asyncio turns it off only on sockets that say they are TCP."""

    async def main() -> int:
        accepted: asyncio.Future = asyncio.get_running_loop().create_future()

        def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result(writer.get_extra_info("socket"))

        listening = bind("127.0.0.1", 0)
        server = await asyncio.start_server(on_connection, sock=listening)
        _, writer = await asyncio.open_connection(*listening.getsockname())
        accepted_socket = await asyncio.wait_for(accepted, 5)
        nodelay = accepted_socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        writer.close()
        server.close()
        await server.wait_closed()
        return nodelay

    assert asyncio.run(main()) != 0
