"""Printed by `make run` before the processes start: where to send webhooks, and how."""

from shared.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    url = f"http://127.0.0.1:{settings.port}/webhooks/stripe"
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
                "  try it          .venv/bin/stripe-ingest demo",
                f"  health          curl -s http://127.0.0.1:{settings.port}/readyz",
                "",
            ]
        )
    )


if __name__ == "__main__":
    main()
