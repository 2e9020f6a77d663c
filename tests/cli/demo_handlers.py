"""A user handler module for demo tests (USER_HANDLERS=tests.cli.demo_handlers): the demo's
dispute fails every time, so its customer's events wait behind it until it dies. Only worker
subprocesses import this module: importing it registers the handler in the process's registry."""

from __future__ import annotations

from worker.registry import Event, Tx, handles

ERROR = "disputes are broken in this demo test"


@handles("charge.dispute.created")
def broken_dispute(tx: Tx, event: Event) -> None:
    raise RuntimeError(ERROR)
