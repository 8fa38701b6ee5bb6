#!/usr/bin/env python3
"""Run a small flow with Legato's engine, recording every step in an SQLite file.

The flow reserves stock, charges a card (retried up to three times: the first attempt fails)
and ships the order. Run it twice with the same database path: the second run finds the flow
finished and does nothing again.

    python examples/engine_quickstart.py /tmp/orders.db
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import legato
from legato import engine
from legato.engine.listeners import PrintingListener
from legato.persistence import connect
from legato.persistence.models import FlowDetail, LogBook

attempts: list[int] = []


@legato.task(provides="reservation")
def reserve(order_id: str, quantity: int) -> str:
    return f"res-{order_id}-{quantity}"


@legato.task(provides="receipt")
def charge(order_id: str, amount: float, attempt: int) -> str:
    attempts.append(attempt)
    if attempt == 1:
        raise ConnectionError("payment service timed out")
    return f"paid-{order_id}-{amount:.2f}"


@legato.task(provides="tracking")
def ship(reservation: str, receipt: str) -> str:
    return f"track-{reservation}-{receipt}"


@legato.flow_factory
def order_flow() -> legato.GraphFlow:
    payment = legato.LinearFlow("payment", retry=legato.Times(3, name="payment-retry",
                                                                 provides="attempt")).add(charge)
    # GraphFlow orders the steps by what they require and provide: ship runs last.
    return legato.GraphFlow("order").add(ship, payment, reserve)


def main(db_path: str) -> dict[str, object]:
    with connect(f"sqlite:///{db_path}") as persistence:
        persistence.upgrade()
        book = next(iter(persistence.get_logbooks()), None)
        if book is None:
            book = LogBook("orders")
            book.add(FlowDetail("order-42"))
            book = persistence.save_logbook(book)
            flow_detail = next(iter(book))
            engine.save_factory_details(flow_detail, order_flow, persistence=persistence)
        flow_detail = next(iter(persistence.get_flows_for_book(book.uuid)))
        eng = engine.load_from_detail(
            flow_detail, persistence=persistence, policy=engine.FactoryPolicy(),
            store={"order_id": "42", "quantity": 2, "amount": 19.5})
        with PrintingListener(eng, stream=sys.stdout):
            eng.run()
        return eng.storage.fetch_all()


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else str(Path(tempfile.mkdtemp()) / "orders.db")
    values = main(path)
    print("tracking:", values.get("tracking"))
