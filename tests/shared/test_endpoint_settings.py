"""The `STRIPE_WEBHOOK_SECRET_<NAME>` family: one named endpoint per variable, its secrets checked
like the default endpoint's, a bad one refused at start by its variable's name."""

from __future__ import annotations

import pytest

from shared.settings import Settings, SettingsError
from tests.ingest.test_process import run_module

CONNECT = "whsec_connect_0123456789abcdef"
ROTATED = "whsec_connect_fedcba9876543210"
EU = "whsec_eu_platform_0123456789ab"


def test_each_variable_of_the_family_names_an_endpoint_lowercased() -> None:
    settings = Settings.from_env(
        environ={
            "STRIPE_WEBHOOK_SECRET": "whsec_default_0123456789abcdef",
            "STRIPE_WEBHOOK_SECRET_CONNECT": f"{CONNECT}, {ROTATED}",
            "STRIPE_WEBHOOK_SECRET_EU_PLATFORM": EU,
            "STRIPE_WEBHOOK_SECRET_BLANK": "  ",  # blank counts as unset
            "STRIPE_WEBHOOK_TOLERANCE": "300",  # not of the family
        },
        env_file=None,
    )
    assert dict(settings.endpoint_secrets) == {"connect": (CONNECT, ROTATED), "eu_platform": (EU,)}
    assert settings.webhook_secrets == ("whsec_default_0123456789abcdef",)


def test_without_the_family_there_is_no_named_endpoint() -> None:
    settings = Settings.from_env(environ={}, env_file=None)
    assert dict(settings.endpoint_secrets) == {}
    assert settings == Settings()  # and settings still compare (and hash) as values
    assert hash(settings) == hash(Settings())


def test_the_settings_never_show_a_named_endpoints_secret() -> None:
    settings = Settings.from_env(environ={"STRIPE_WEBHOOK_SECRET_CONNECT": CONNECT}, env_file=None)
    assert "connect" in repr(settings)
    assert CONNECT not in repr(settings)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"STRIPE_WEBHOOK_SECRET_CONNECT": "whsec_short"}, "STRIPE_WEBHOOK_SECRET_CONNECT"),
        ({"STRIPE_WEBHOOK_SECRET_CONNECT": f"whsec_,{CONNECT}"}, "STRIPE_WEBHOOK_SECRET_CONNECT"),
        ({"STRIPE_WEBHOOK_SECRET_CONNECT": ","}, "STRIPE_WEBHOOK_SECRET_CONNECT"),
        ({"STRIPE_WEBHOOK_SECRET_A.B": CONNECT}, "STRIPE_WEBHOOK_SECRET_A.B"),
        ({"STRIPE_WEBHOOK_SECRET_": CONNECT}, "STRIPE_WEBHOOK_SECRET_"),
        (
            {"STRIPE_WEBHOOK_SECRET_CONNECT": CONNECT, "STRIPE_WEBHOOK_SECRET_Connect": ROTATED},
            "STRIPE_WEBHOOK_SECRET_",
        ),
    ],
)
def test_a_bad_member_is_refused_by_its_variable_in_one_line(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError) as excinfo:
        Settings.from_env(environ=environ, env_file=None)
    message = str(excinfo.value)
    assert named in message
    assert "\n" not in message
    assert "0123456789" not in message  # never the secret


def test_web_refuses_to_start_with_a_bad_named_secret(env: dict[str, str]) -> None:
    result = run_module({**env, "STRIPE_WEBHOOK_SECRET_CONNECT": "sk_test_oops"})

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "STRIPE_WEBHOOK_SECRET_CONNECT" in lines[0]
    assert "sk_test_oops" not in result.stderr
