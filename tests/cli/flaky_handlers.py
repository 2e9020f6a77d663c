"""A user handler module for CLI tests (USER_HANDLERS=tests.cli.flaky_handlers).

`coupon.created` fails until the `cli_test_switch` row says it is fixed, and records one row in
`cli_test_effects` per successful run, so a test can count effects. The tables are created by
the test (see CREATE_TABLES in test_replay_workers.py). Only worker subprocesses import
this module: importing it registers the handler in the process-wide registry.
"""

from __future__ import annotations

from worker.registry import Event, Tx, handles


@handles("coupon.created")
def flaky_coupon(tx: Tx, event: Event) -> None:
    row = tx.execute("SELECT fixed FROM cli_test_switch").fetchone()
    if not row or not row["fixed"]:
        raise RuntimeError("coupon handler is broken until cli_test_switch.fixed")
    tx.execute("INSERT INTO cli_test_effects (event_id) VALUES (%s)", (event.id,))
