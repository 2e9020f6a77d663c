"""`python -m tests.reliability.report` (`make reliability`): run the reliability suite and
write docs/RELIABILITY.md from the figures each scenario recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "RELIABILITY.md"
COLUMNS = [
    ("sent", "sent"),
    ("answered_200", "answered 200"),
    ("stored", "stored"),
    ("finished", "finished"),
    ("duplicate_effects", "duplicate effects"),
    ("lost", "lost"),
    ("unexpected_5xx", "unexpected 5xx"),
    ("seconds", "s"),
]

HEADER = """# Reliability

Written by `make reliability` (`python -m tests.reliability.report`) on {when}; rerun it to
refresh this page (do not edit by hand). Each row is one scenario of `tests/reliability/`, run
against real processes (`python -m ingest` under the least-privileged web role of
`deploy/postgres/roles.sql`, `python -m worker` and `python -m worker.sweeper` under the worker
role), real PostgreSQL and Redis (a scenario that stops a server starts its own), with
requests signed as Stripe signs them. CI runs the same suite with `make test`.

- **sent**: distinct events; **answered 200**: of those, acknowledged by the receiver;
  **stored**: rows in `stripe_events`; **finished**: processed, ignored or dead.
- **duplicate effects**: effects written more than once (the scenarios' handler writes to a
  table without a key, so a second run of an event would show).
- **lost**: acknowledged with 200 but never finished.
- **unexpected 5xx**: answers 500-599 other than 503 (503 is what an outage of PostgreSQL
  gets, and senders retry it as Stripe does).
- Every scenario also scans every process's log for signing secrets, API keys, e-mail
  addresses, card numbers, `last4` and card fingerprints: none was found in any row below.

"""


def render(results: list[dict[str, object]], when: str, outcome: str) -> str:
    lines = [HEADER.format(when=when)]
    head = ["scenario", "what was done", *[title for _, title in COLUMNS], "notes"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("| " + " | ".join(["---"] * 2 + ["---:"] * len(COLUMNS) + ["---"]) + " |")
    for r in results:
        cells = [str(r["scenario"]), str(r["what"]), *[str(r[k]) for k, _ in COLUMNS]]
        lines.append("| " + " | ".join([*cells, str(r.get("notes", ""))]) + " |")
    lines.append("")
    lines.append(f"Suite outcome: {outcome}.")
    return "\n".join(lines) + "\n"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        results_path = Path(tmp) / "results.jsonl"
        env = {**os.environ, "RELIABILITY_RESULTS": str(results_path)}
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        code = subprocess.call(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/reliability"],
            cwd=ROOT,
            env=env,
        )
        results = (
            [json.loads(line) for line in results_path.read_text().splitlines()]
            if (results_path.exists())
            else []
        )
    outcome = "every scenario passed" if code == 0 else f"pytest exited {code}: see its output"
    OUT.write_text(render(results, started, outcome))
    print(f"wrote {OUT.relative_to(ROOT)} ({len(results)} scenarios)")
    return code


if __name__ == "__main__":
    sys.exit(main())
