"""`customers show`: mirror rows, the access decision with its reason, and the timeline with the
dispute keyed by the customer's charge (applied by the real engine)."""

from __future__ import annotations

from shared.settings import Settings
from tests.cli.clitools import run_cli, run_json
from tests.worker.mirror import builders as b
from tests.worker.mirror.support import apply

T = b.T0


def _disputed_customer(settings: Settings) -> None:
    apply(
        settings,
        b.event("customer.created", b.customer("cus_dsp"), "evt_dsp_1", T),
        b.event(
            "customer.subscription.updated",
            b.subscription("old", "sub_dsp", "cus_dsp", "active"),
            "evt_dsp_2",
            T + 1,
        ),
        b.event("charge.succeeded", b.charge("ch_dsp", "cus_dsp"), "evt_dsp_3", T + 2),
        b.event("charge.dispute.created", b.dispute("dp_dsp", "ch_dsp"), "evt_dsp_4", T + 3),
        b.event("customer.created", b.customer("cus_other"), "evt_other_1", T + 4),
    )


def test_customers_show_has_the_charge_keyed_dispute_and_the_access_reason(
    env: dict[str, str], settings: Settings
) -> None:
    _disputed_customer(settings)
    shown = run_json(env, "customers", "show", "cus_dsp")
    assert shown["access"]["has_access"] is False and shown["access"]["reason"] == "dispute_open"
    timeline = [(e["id"], e["ordering_key"]) for e in shown["events"]]
    assert timeline == [
        ("evt_dsp_4", "ch_dsp"),  # keyed by the charge, not the customer
        ("evt_dsp_3", "cus_dsp"),
        ("evt_dsp_2", "cus_dsp"),
        ("evt_dsp_1", "cus_dsp"),
    ]
    assert (shown["shown"], shown["total"]) == (4, 4)
    mirror = shown["mirror"]
    assert [r["id"] for r in mirror["customers"]] == ["cus_dsp"]
    assert [r["id"] for r in mirror["subscriptions"]] == ["sub_dsp"]
    assert [(r["id"], r["status"]) for r in mirror["disputes"]] == [("dp_dsp", "needs_response")]
    assert mirror["refunds"] == []

    text = run_cli(env, "customers", "show", "cus_dsp", "--limit", "2")
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "no (dispute_open)" in out and "DISPUTES" in out and "dp_dsp" in out
    assert "evt_dsp_4" in out and "evt_dsp_1" not in out
    assert out.splitlines()[-1] == "2 of 4 shown (--limit N shows more)"
    # `events list --customer` is the same timeline.
    listed = run_json(env, "events", "list", "--customer", "cus_dsp")
    assert [e["id"] for e in listed["events"]] == [e for e, _ in timeline]


def test_an_unknown_customer_exits_1_with_one_line(env: dict[str, str]) -> None:
    result = run_cli(env, "customers", "show", "cus_nobody")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "Error: unknown customer: cus_nobody (no mirror rows, no events)"
    ]
