"""Printed by `make run` before the processes start: where to send webhooks, and how."""

from shared.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    base = f"http://127.0.0.1:{settings.port}"
    url = f"{base}/webhooks/stripe"
    secret = settings.webhook_secrets[0] if settings.webhook_secrets else "(none set)"
    print(
        "\n".join(
            [
                "",
                "stripe-ingest is starting (web, worker, sweeper).",
                f"  webhook URL     {url}",
                f"  signing secret  {secret}   (in .env as STRIPE_WEBHOOK_SECRET)",
                "  forward Stripe  stripe listen --forward-to " + url,
                "                  then put the whsec_ that `stripe listen` prints into .env",
                f"  try it          .venv/bin/stripe-ingest demo --url {base}",
                f"  health          curl -s {base}/readyz",
                "",
            ]
        )
    )


if __name__ == "__main__":
    main()
