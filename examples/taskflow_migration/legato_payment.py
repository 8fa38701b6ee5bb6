"""Charge an order through a flaky payment gateway, as a job run by a conductor — the program
of ``taskflow_payment.py`` moved from OpenStack TaskFlow to Legato. Diff the two: the imports,
the board's URL and one decorator changed (docs/migrating-from-taskflow.md walks through them).

Needs a Redis on 127.0.0.1:6379. Run: python legato_payment.py
"""

import contextlib
import os
import threading
import uuid

import legato
from legato.taskflow import engines, retry, task
from legato.taskflow.conductors import backends as conductor_backends
from legato.taskflow.jobs import backends as job_backends
from legato.taskflow.patterns import linear_flow
from legato.taskflow.persistence import backends as persistence_backends
from legato.taskflow.persistence import models

BOARD = "redis://127.0.0.1:6379/0?namespace=" + os.environ.get("PAYMENTS_NAMESPACE", "payments")
PERSISTENCE = {"connection": "sqlite:///payments.db"}

GATEWAY_CALLS = []


class Reserve(task.Task):
    default_provides = "reservation"

    def execute(self, order_id, amount):
        return {"order": order_id, "amount": amount}


class Charge(task.Task):
    default_provides = "receipt"

    def execute(self, reservation):
        GATEWAY_CALLS.append(reservation["order"])
        if len(GATEWAY_CALLS) < 3:
            raise OSError("payment gateway timed out")
        return f"receipt-{reservation['order']}-{reservation['amount']}"

    def revert(self, reservation, **kwargs):
        print("charge attempt undone for order", reservation["order"])


class Notify(task.Task):
    def execute(self, receipt):
        print("customer notified:", receipt)


@legato.flow_factory
def make_payment_flow():
    return linear_flow.Flow("payment").add(
        Reserve("reserve"),
        linear_flow.Flow("charge", retry.Times(5, name="charge-retry")).add(Charge("charge")),
        Notify("notify"),
    )


def main():
    persistence = persistence_backends.fetch(PERSISTENCE)
    with contextlib.closing(persistence.get_connection()) as conn:
        conn.upgrade()
    board = job_backends.fetch("payments", BOARD, persistence=persistence)
    board.connect()
    try:
        book = models.LogBook("order-42")
        flow_detail = models.FlowDetail("payment", str(uuid.uuid4()))
        book.add(flow_detail)
        with contextlib.closing(persistence.get_connection()) as conn:
            conn.save_logbook(book)
        engines.save_factory_details(flow_detail, make_payment_flow, [], {}, backend=persistence)
        board.post("order-42", book=book, details={"store": {"order_id": 42, "amount": 1999}})

        conductor = conductor_backends.fetch("blocking", "worker-1", board,
                                             persistence=persistence, engine="serial")
        consumed = threading.Event()
        conductor.notifier.register("job_consumed", lambda event, details: consumed.set())
        worker = threading.Thread(target=conductor.run)
        worker.start()
        consumed.wait(60)
        conductor.stop()
        worker.join()

        with contextlib.closing(persistence.get_connection()) as conn:
            done = conn.get_logbook(book.uuid).find(flow_detail.uuid)
        print("flow:", done.state)
        print("gateway calls:", len(GATEWAY_CALLS))
        print("jobs left on the board:", board.job_count)
    finally:
        board.close()


if __name__ == "__main__":
    main()
