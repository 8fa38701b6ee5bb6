#!/usr/bin/env python3
"""ZooKeeper messages per job: what a blocking conductor's board sends and receives.

Every connection to ZooKeeper goes through a counting proxy in this script, which reads the
protocol's framing (a 4-byte length before each message) and sorts the messages by direction
and kind: requests by opcode, replies, watch events (xid -1) and pings (xid -2). Nothing in
kazoo or Legato is changed. Two layouts:

* ``separate`` (as ``bench/conductor.py``): a poster board posts N jobs of a 1-task flow and
  closes, then a fresh board's blocking conductor drains them; the drainer's connection start-up
  (watch and listings) is counted apart from its draining.
* ``same`` (as ``bench/conductor_cost.py``): one board posts N jobs, then its conductor drains
  them.

    .venv-bench/bin/python bench/zookeeper_messages.py --jobs 1000

Figures are per job (N large enough that start-up is noise).
"""

from __future__ import annotations

import argparse
import collections
import select
import socket
import struct
import threading
import uuid
from typing import Any

from legato import jobboard as jb
from legato import persistence as lp
from legato.conductor import BlockingConductor
from legato.testing import conductor as tc

#: ZooKeeper opcodes (``ZooDefs.OpCode``) this board uses.
OPS = {1: "create", 2: "delete", 3: "exists", 4: "getData", 5: "setData", 8: "getChildren",
       9: "sync", 11: "ping", 12: "getChildren2", 13: "check", 14: "multi", 15: "create2",
       -11: "closeSession", 101: "setWatches", 106: "addWatch", 105: "setWatches2"}


class CountingProxy:
    """Forwards 127.0.0.1:<port> to ZooKeeper, counting each connection's messages."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        threading.Thread(target=self._accept, daemon=True).start()

    def snapshot(self) -> collections.Counter[str]:
        with self.lock:
            return collections.Counter(self.counts)

    def _accept(self) -> None:
        while True:
            conn, _ = self.listener.accept()
            upstream = socket.create_connection(self.target)
            for sock in (conn, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(conn, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        buffers = {client: b"", server: b""}
        first = {client: True, server: True}
        while True:
            ready, _, _ = select.select([client, server], [], [])
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    client.close()
                    server.close()
                    return
                (server if sock is client else client).sendall(data)
                buffers[sock] += data
                buffers[sock] = self._frames(buffers[sock], sock is client, first, sock)

    def _frames(self, buffer: bytes, from_client: bool, first: dict[Any, bool],
                sock: Any) -> bytes:
        while len(buffer) >= 4:
            (size,) = struct.unpack(">i", buffer[:4])
            if len(buffer) < 4 + size:
                break
            frame, buffer = buffer[4:4 + size], buffer[4 + size:]
            if first[sock]:  # the connect request or response: no xid
                first[sock] = False
                continue
            with self.lock:
                self.counts[_kind(frame, from_client)] += 1
        return buffer


def _kind(frame: bytes, from_client: bool) -> str:
    xid = struct.unpack(">i", frame[:4])[0]
    if from_client:
        op = struct.unpack(">i", frame[4:8])[0]
        return "ping" if xid == -2 else f"req {OPS.get(op, op)}"
    if xid == -1:
        return "event"
    if xid == -2:
        return "pong"
    return "reply"


def per_job(after: collections.Counter[str], before: collections.Counter[str],
            jobs: int) -> dict[str, float]:
    diff = after - before
    return {key: round(value / jobs, 2) for key, value in sorted(diff.items())}


def show(title: str, counts: dict[str, float]) -> None:
    total = round(sum(v for k, v in counts.items() if k not in ("ping", "pong")), 2)
    print(f"{title}: {total} messages per job (pings aside)")
    for key, value in counts.items():
        print(f"    {key:20} {value}")


def run(layout: str, jobs: int) -> None:
    proxy = CountingProxy(("127.0.0.1", 2181))
    url = f"zookeeper://127.0.0.1:{proxy.port}/bench-messages-{uuid.uuid4().hex}"
    persistence = lp.connect("memory://")
    with jb.connect(url, persistence=persistence) as poster:
        start = proxy.snapshot()
        for _ in range(jobs):
            tc.post_job(poster, persistence, tc.steps_flow, kwargs={"steps": 1})
        posted = proxy.snapshot()
        if layout == "same":
            BlockingConductor("bench", poster, persistence, wait_timeout=0.05).run(
                max_dispatches=jobs)
            show(f"[{layout}] posting", per_job(posted, start, jobs))
            show(f"[{layout}] draining", per_job(proxy.snapshot(), posted, jobs))
            return
    closed = proxy.snapshot()
    with jb.connect(url, persistence=persistence) as board:
        ready = proxy.snapshot()
        BlockingConductor("bench", board, persistence, wait_timeout=0.05).run(
            max_dispatches=jobs)
        end = proxy.snapshot()
    show(f"[{layout}] posting", per_job(posted, start, jobs))
    show(f"[{layout}] drainer start-up (in all, not per job)", per_job(ready, closed, 1))
    show(f"[{layout}] draining (the drainer's connection alone)", per_job(end, ready, jobs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--layout", choices=("separate", "same", "both"), default="both")
    args = parser.parse_args()
    for layout in ("separate", "same") if args.layout == "both" else (args.layout,):
        run(layout, args.jobs)


if __name__ == "__main__":
    main()
