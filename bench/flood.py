#!/usr/bin/env python3
"""1,100 sockets that never start TLS, each reconnecting as soon as it is closed (the
attack of issue #12: descriptors run out). Runs until SIGTERM; prints connects on exit.

    python3 bench/flood.py HOST PORT [SOCKETS] [SOURCE_ADDRESS]   (bench/flood.sh runs it)
"""
import asyncio, signal, socket, sys

async def one(host, port, source, counts, stop):
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        except OSError:
            counts["failed"] += 1
            await asyncio.sleep(0.05)
            continue
        counts["connects"] += 1
        try:
            # Held until the gateway closes it (at once over a bound, else at its
            # handshake deadline), or 1 s, then reconnected.
            await asyncio.wait_for(reader.read(1), timeout=1.0)
        except (asyncio.TimeoutError, OSError):
            pass
        writer.close()

async def main():
    host, port = sys.argv[1], int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1100
    source = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.2"
    counts = {"connects": 0, "failed": 0}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    tasks = [asyncio.create_task(one(host, port, source, counts, stop)) for _ in range(n)]
    await stop.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(f"flood: {n} sockets from {source}: {counts['connects']} connects, {counts['failed']} failed")

asyncio.run(main())
