"""Simulates idle agents: for each `AGENT_ID.SECRET` line of a file, keeps one long-poll
open against the server (re-polling when it answers) until killed. Loopback only."""
import asyncio
import json
import sys

HOST, PORT = "127.0.0.1", int(sys.argv[2])


async def agent(bearer: str) -> None:
    generation = -1
    while True:
        try:
            reader, writer = await asyncio.open_connection(HOST, PORT)
            writer.write(
                f"GET /agent/v1/state?after={generation}&wait=25 HTTP/1.1\r\nHost: {HOST}\r\n"
                f"Authorization: Bearer {bearer}\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            raw = await reader.read()
            writer.close()
            body = raw.split(b"\r\n\r\n", 1)[1]
            generation = json.loads(body)["generation"]
        except Exception:
            await asyncio.sleep(1)


async def main() -> None:
    bearers = [line.strip() for line in open(sys.argv[1]) if line.strip()]
    await asyncio.gather(*(agent(b) for b in bearers))


asyncio.run(main())
