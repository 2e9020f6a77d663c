"""The notifications outbox as the workers' gauges read it: still to send, failing, given up."""

from __future__ import annotations

import pytest

from shared.settings import Settings
from tests.worker.mirror import builders as b
from tests.worker.mirror.support import apply, rows
from worker.gauges import DatabaseGauges
from worker.mirror import notifications
from worker.mirror.transports import Message


class Refusing:
    def send(self, message: Message) -> str | None:
        raise ConnectionError("mail relay down")


class Accepting:
    def send(self, message: Message) -> str | None:
        return None


def _outbox_gauges(settings: Settings) -> dict[str, float]:
    return {
        m.name: m.samples[0].value
        for m in DatabaseGauges(settings.database_url).collect()
        if m.name.startswith("stripe_notifications_")
    }


def test_outbox_gauges_count_unsent_failing_and_given_up_notifications(
    settings: Settings,
) -> None:
    assert _outbox_gauges(settings) == {
        "stripe_notifications_unsent": 0,
        "stripe_notifications_retrying": 0,
        "stripe_notifications_failed": 0,
        "stripe_notifications_oldest_unsent_age_seconds": 0,
    }
    events = [
        b.event("invoice.paid", b.invoice("old", f"in_g{i}", f"cus_g{i}", None, "paid"), f"e{i}", i)
        for i in range(4)
    ]
    apply(settings, *events)
    ids = [r["id"] for r in rows(settings, "SELECT id FROM notifications ORDER BY id")]
    assert len(ids) == 4
    rows(
        settings,
        "UPDATE notifications SET created_at = now() - interval '10 minutes' RETURNING id",
    )

    assert notifications.deliver(settings, ids[0], transport=Accepting()) is True
    with pytest.raises(notifications.DeliveryFailed):
        notifications.deliver(settings, ids[1], transport=Refusing())
    for _ in range(notifications.MAX_ATTEMPTS):
        with pytest.raises(notifications.DeliveryFailed):
            notifications.deliver(settings, ids[2], transport=Refusing())
    # Given up: no further attempt claims it.
    assert notifications.deliver(settings, ids[2], transport=Accepting()) is False

    gauges = _outbox_gauges(settings)
    oldest = gauges.pop("stripe_notifications_oldest_unsent_age_seconds")
    assert gauges == {
        "stripe_notifications_unsent": 2,  # the failing one and the untouched one
        "stripe_notifications_retrying": 1,
        "stripe_notifications_failed": 1,
    }
    assert 600 - 5 <= oldest < 600 + 300
