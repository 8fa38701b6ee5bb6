#!/usr/bin/env python3
"""Quick figures for the ZooKeeper jobboard (the official table is bench/jobboard.py).

Measures, on one board path:

* claim + consume rate, one thread, with a backlog of ``--small`` and of ``--backlog`` jobs
  (the backlog is written straight into ZooKeeper, pipelined, to save time);
* post -> wake latency: one board blocks in ``wait()``, another board object (its own session)
  posts; the time from just before ``post`` to ``wait`` returning, median and p90.

Run (ZooKeeper on 127.0.0.1:2181, see scripts/zookeeper.sh)::

    .venv/bin/python bench/jobboard_zookeeper_quick.py --backlog 10000 --samples 200
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NotEmptyError

from legato import jobboard as jb
from legato.jobboard.base import JobRecord
from legato.jobboard.zookeeper.index import job_name_prefix
from legato.jobboard.zookeeper.records import encode_job as _encode_job


def fill(hosts: str, path: str, count: int) -> None:
    """Write ``count`` NORMAL-priority jobs under ``path``/jobs, pipelined."""
    client = KazooClient(hosts=hosts)
    client.start(10)
    try:
        client.ensure_path(f"{path}/jobs")
        pending: list[Any] = []
        now = time.time()
        for i in range(count):
            record = JobRecord(uuid=str(uuid.uuid4()), name=f"backlog-{i}", details={},
                               book_uuid=None, book_name=None, priority=0, created_on=now)
            pending.append(client.create_async(
                f"{path}/jobs/{job_name_prefix(0, record.uuid)}", _encode_job(record),
                sequence=True))
            if len(pending) >= 1000:
                for item in pending:
                    item.get()
                pending.clear()
        for item in pending:
            item.get()
    finally:
        client.stop()
        client.close()


def claim_rate(url: str, count: int) -> float:
    """claim_next + consume per second, one thread, ``count`` times."""
    with jb.connect(url) as board:
        board.wait(timeout=10)  # the index is loaded
        started = time.perf_counter()
        for _ in range(count):
            job = board.claim_next("bench")
            assert job is not None
            board.consume(job, "bench")
        return count / (time.perf_counter() - started)


def _wait_once(board: jb.JobBoard, ready: threading.Event, stamp: list[float]) -> None:
    ready.set()
    if board.wait(timeout=10):
        stamp.append(time.perf_counter())


def wake_latency(url: str, samples: int) -> list[float]:
    latencies: list[float] = []
    with jb.connect(url) as waiter, jb.connect(url) as poster:
        for i in range(samples):
            ready = threading.Event()
            stamp: list[float] = []
            thread = threading.Thread(target=_wait_once, args=(waiter, ready, stamp))
            thread.start()
            ready.wait(5)
            time.sleep(0.002)  # let the waiter block
            before = time.perf_counter()
            job = poster.post(f"wake-{i}")
            thread.join(10)
            latencies.append(stamp[0] - before)
            poster.consume(poster.claim(job, "bench"), "bench")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="127.0.0.1:2181")
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--claims", type=int, default=500)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    root = f"/legato-bench/{uuid.uuid4().hex[:8]}"
    try:
        for backlog in (args.small, args.backlog):
            path = f"{root}/b{backlog}"
            fill(args.hosts, path, backlog + args.claims)
            rate = claim_rate(f"zookeeper://{args.hosts}{path}", args.claims)
            print(f"claim+consume, backlog {backlog:>7}: {rate:7.0f} jobs/s (1 thread)")
        lat = sorted(wake_latency(f"zookeeper://{args.hosts}{root}/wake", args.samples))
        print(f"post->wake latency: p50 {statistics.median(lat) * 1000:.2f} ms, "
              f"p90 {lat[int(len(lat) * 0.9)] * 1000:.2f} ms ({len(lat)} samples)")
    finally:
        remove(args.hosts, root)


def remove(hosts: str, root: str) -> None:
    """Delete ``root`` and everything under it, leaves first, deletes pipelined."""
    client = KazooClient(hosts=hosts)
    client.start(10)
    try:
        def delete_tree(path: str) -> None:
            children = client.get_children(path)
            for start in range(0, len(children), 1000):
                batch = children[start:start + 1000]
                for child, item in [(c, client.delete_async(f"{path}/{c}")) for c in batch]:
                    try:
                        item.get()
                    except NotEmptyError:
                        delete_tree(f"{path}/{child}")
            client.delete(path)

        if client.exists(root):
            delete_tree(root)
    finally:
        client.stop()
        client.close()


if __name__ == "__main__":
    main()
