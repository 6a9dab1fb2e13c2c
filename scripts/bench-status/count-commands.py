#!/usr/bin/env python3
"""A counting TCP proxy for the MySQL protocol, for scripts/bench-status.sh.

Listens on 127.0.0.1 (a free port, printed as "listening on PORT"), forwards
every connection to UPSTREAM_HOST:UPSTREAM_PORT unchanged, and counts the
commands clients send: a client packet with sequence id 0 starts a command,
its first payload byte names it (COM_QUERY, COM_STMT_EXECUTE, COM_PING, …).
Every command is one round trip to the server. No TLS (neither hone-build's
`mysql` crate build nor mysql2 asks for it here).

On SIGUSR1 it prints one JSON line with the counts since the previous SIGUSR1
(and the seconds elapsed, and connections opened) and starts counting afresh.

Usage: count-commands.py UPSTREAM_HOST UPSTREAM_PORT
"""

import asyncio
import json
import signal
import sys
import time

NAMES = {
    0x01: "quit",
    0x02: "init_db",
    0x03: "query",
    0x0E: "ping",
    0x11: "change_user",
    0x16: "stmt_prepare",
    0x17: "stmt_execute",
    0x18: "stmt_send_long_data",
    0x19: "stmt_close",
    0x1A: "stmt_reset",
    0x1B: "set_option",
    0x1F: "reset_connection",
}

counts = {}
connections = 0
since = time.monotonic()


def dump(*_):
    global counts, connections, since
    now = time.monotonic()
    out = {"seconds": round(now - since, 3), "connections": connections, "commands": counts}
    print(json.dumps(out, sort_keys=True), flush=True)
    counts, connections, since = {}, 0, now


async def client_to_server(reader, writer):
    """Copies the client's bytes, parsing packet headers on the way."""
    buf = b""
    # The first client packet answers the server's greeting (sequence id 1,
    # as do authentication exchanges), so only sequence id 0 starts a command.
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            buf += data
            while len(buf) >= 4:
                length = int.from_bytes(buf[0:3], "little")
                if len(buf) < 4 + length:
                    break
                seq = buf[3]
                if seq == 0 and length > 0:
                    name = NAMES.get(buf[4], "0x%02x" % buf[4])
                    counts[name] = counts.get(name, 0) + 1
                buf = buf[4 + length :]
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def server_to_client(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main():
    host, port = sys.argv[1], int(sys.argv[2])

    async def handle(c_reader, c_writer):
        global connections
        connections += 1
        try:
            s_reader, s_writer = await asyncio.open_connection(host, port)
        except OSError:
            c_writer.close()
            return
        await asyncio.gather(
            client_to_server(c_reader, s_writer), server_to_client(s_reader, c_writer)
        )

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print("listening on %d" % server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
