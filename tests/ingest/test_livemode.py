"""`STRIPE_LIVEMODE`: events of the other mode are 400 `livemode_mismatch` and nothing is stored.
Unset, the mode follows `STRIPE_API_KEY` when one is set, else both modes are taken."""

from __future__ import annotations

import pytest

from ingest.app import create_app
from shared.settings import Settings
from tests.ingest.helpers import Stored, deliver, serve
from tests.support import unique_event

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("environment", "accepted"),
    [
        ({"STRIPE_LIVEMODE": "false"}, [False]),
        ({"STRIPE_LIVEMODE": "true"}, [True]),
        ({"STRIPE_LIVEMODE": "true", "STRIPE_API_KEY": "sk_test_0123456789"}, [True]),
        ({"STRIPE_API_KEY": "sk_live_0123456789"}, [True]),
        ({"STRIPE_API_KEY": "rk_live_0123456789"}, [True]),
        ({"STRIPE_API_KEY": "sk_test_0123456789"}, [False]),
        ({"STRIPE_API_KEY": "rk_test_0123456789"}, [False]),
        ({}, [False, True]),
    ],
)
async def test_events_of_the_other_mode_are_refused_and_not_stored(
    env: dict[str, str], stored: Stored, environment: dict[str, str], accepted: list[bool]
) -> None:
    settings = Settings.from_env(environ={**env, **environment}, env_file=None)
    sent = {}
    async with serve(create_app(settings)) as client:
        for livemode in (False, True):
            event = unique_event("stripe-ruby-mock__invoice.paid__1", f"mode-{livemode}")
            event["livemode"] = livemode
            sent[livemode] = (event["id"], await deliver(client, event))

    for livemode, (event_id, response) in sent.items():
        if livemode in accepted:
            assert response.status_code == 200
            assert response.json() == {"received": True, "duplicate": False, "id": event_id}
        else:
            assert response.status_code == 400
            assert response.json() == {"error": "livemode_mismatch"}
    assert set(stored.rows()) == {sent[mode][0] for mode in accepted}
    assert all(row["livemode"] in accepted for row in stored.rows().values())
