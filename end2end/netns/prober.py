"""Runs in a client namespace. For every line `HOST PORT` on stdin, tries to connect
every 2 ms until a connection succeeds and prints the milliseconds that took."""
import socket
import sys
import time

for line in sys.stdin:
    host, port = line.split()
    start = time.monotonic()
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=0.002):
                break
        except OSError:
            if time.monotonic() - start > 10:
                break
            time.sleep(0.002)
    print(f"{(time.monotonic() - start) * 1000:.2f}", flush=True)
