"""Fill a bench database's `stripe_events` and mirror tables in SQL, fast, for the growth bench.

Payloads are templated from bench/events.py's realistic events (one template per generated
event, so the corpus weights carry over); every row gets its own ids. Rows `[lo, hi)` are added
on top of what is there: customers grow with the table (one per 20 events), `created` spreads
over the last 90 days, nearly every event is processed with its attempt row, about one in 10,000
is dead with a dead letter and one in 100,000 pending.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import psycopg

from bench.events import generate
from bench.space import say
from ingest.event import ordering_key

EVENTS_PER_CUSTOMER = 20
CHUNK = 250_000
FILLERS = 2
_TEMPLATES = """CREATE TEMP TABLE IF NOT EXISTS fill_templates
    (n int PRIMARY KEY, type text, api text, key text, body text)"""
# s: one row per new event (hash-spread customer, template and second of the 90 days).
_EVENTS = """
WITH s AS (
    SELECT i, 'evt_g' || lpad(i::text, 9, '0') AS id, i::text AS o,
           lpad(((i * 2654435761) %% %(customers)s)::text, 7, '0') AS cus,
           CASE WHEN i %% 99991 = 7 THEN 'pending' WHEN i %% 9973 = 5 THEN 'dead'
                ELSE 'processed' END AS status,
           now() - interval '90 days' + make_interval(secs => (i * 40503) %% 7775000) AS created,
           1 + (i * 7919) %% %(templates)s AS n
    FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i
), ins AS (
    INSERT INTO stripe_events (id, type, created, api_version, ordering_key, payload,
                               received_at, status, attempts, last_error, processed_at,
                               process_seq, enqueued_at)
    SELECT s.id, t.type, c.created, t.api, replace(replace(t.key, '@N@', s.cus), '@O@', s.o),
           replace(replace(replace(replace(t.body, '@E@', s.id), '@N@', s.cus), '@O@', s.o),
                   '@T@', extract(epoch FROM c.created)::bigint::text)::jsonb,
           c.created + interval '2 s', s.status,
           CASE s.status WHEN 'pending' THEN 0 WHEN 'dead' THEN 5 ELSE 1 END,
           CASE s.status WHEN 'dead' THEN 'RuntimeError: bench handler failed' END,
           CASE s.status WHEN 'processed' THEN c.created + interval '2.05 s' END,
           CASE s.status WHEN 'pending' THEN NULL ELSE nextval('process_seq') END,
           c.created + interval '2 s'
    FROM s JOIN fill_templates t USING (n)
    CROSS JOIN LATERAL (SELECT CASE WHEN s.status = 'pending'
                                    THEN now() - make_interval(secs => s.i %% 600)
                                    ELSE s.created END AS created) c
    RETURNING id, status, processed_at, received_at
), attempts AS (
    INSERT INTO event_attempts (event_id, attempt, started_at, finished_at, outcome, error, worker)
    SELECT id, 1, coalesce(processed_at, received_at) - interval '40 ms',
           coalesce(processed_at, received_at),
           CASE status WHEN 'dead' THEN 'dead' ELSE 'processed' END,
           CASE status WHEN 'dead' THEN 'RuntimeError: bench handler failed' END, 'bench-fill'
    FROM ins WHERE status <> 'pending'
)
INSERT INTO dead_letters (event_id, dead_at, attempts, error)
SELECT id, received_at + interval '1 minute', 5, 'RuntimeError: bench handler failed'
FROM ins WHERE status = 'dead'
"""
# The mirror's rows for the customers new in this step, and invoices/charges/notifications in
# proportion to the new events (the dispute templates name the customer's charge ch_g<N>).
_MIRROR = """
WITH c AS (
    SELECT lpad(n::text, 7, '0') AS cus,
           now() - interval '91 days' + make_interval(mins => (n %% 1000)::int) AS at
    FROM generate_series(%(c_lo)s::bigint, %(c_hi)s::bigint - 1) AS n
), cu AS (
    INSERT INTO customers (id, email, name, currency, created, source_event_created,
                           source_event_id)
    SELECT 'cus_g' || cus, NULL, 'Bench ' || cus, 'usd', at, at, 'evt_fill' FROM c
), su AS (
    INSERT INTO subscriptions (id, customer_id, status, price_id, quantity, created,
                               current_period_start, current_period_end, source_event_created,
                               source_event_id)
    SELECT 'sub_g' || cus, 'cus_g' || cus, 'active', 'price_bench', 1, at, now() - interval
           '10 days', now() + interval '20 days', at, 'evt_fill' FROM c
)
INSERT INTO charges (id, customer_id, amount, currency, captured, paid, status, created,
                     source_event_created, source_event_id)
SELECT 'ch_g' || cus, 'cus_g' || cus, 2000, 'usd', true, true, 'succeeded', at, at, 'evt_fill'
FROM c
"""
_PER_EVENT = """
WITH s AS (
    SELECT i, 'cus_g' || lpad(((i * 2654435761) %% %(customers)s)::text, 7, '0') AS cus,
           now() - interval '90 days' + make_interval(secs => (i * 40503) %% 7775000) AS at
    FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1, 5) AS i
), inv AS (
    INSERT INTO invoices (id, customer_id, subscription_id, status, currency, amount_due,
                          amount_paid, total, charge_id, created, paid_at, source_event_created,
                          source_event_id)
    SELECT 'in_gf' || i, cus, replace(cus, 'cus_', 'sub_'), 'paid', 'usd', 2000, 2000, 2000,
           'ch_gf' || i, at, at, at, 'evt_fill' FROM s
), ch AS (
    INSERT INTO charges (id, customer_id, invoice_id, amount, currency, captured, paid, status,
                         created, source_event_created, source_event_id)
    SELECT 'ch_gf' || i, cus, 'in_gf' || i, 2000, 'usd', true, true, 'succeeded', at, at,
           'evt_fill' FROM s
)
INSERT INTO notifications (event_id, kind, customer_id, created_at, sent_at, dedupe_key)
SELECT 'evt_g' || lpad(i::text, 9, '0'), 'invoice_paid', cus, at, at + interval '1 s',
       'evt_g' || lpad(i::text, 9, '0')
FROM s WHERE i %% 10 = 0
"""


def templates(count: int = 200) -> list[tuple[int, str, str, str, str]]:
    """(n, type, api_version, ordering-key template, body template) from realistic events."""
    found = []
    for n, e in enumerate(generate(count, tag="T", customers=1, seed=5), start=1):
        index = e.id.removeprefix("evt_T_")
        text = e.body.decode()
        event: dict[str, Any] = orjson.loads(text)
        key = ordering_key(event)
        text = text.replace(f'\n  "created": {event["created"]},', '\n  "created": @T@,', 1)
        for old, new in (
            (e.id, "@E@"), (f"_T{int(index)}", "_g@O@"), ("bench00000", "g@N@"),
        ):  # fmt: skip
            text, key = text.replace(old, new), key.replace(old, new)
        found.append((n, e.type, str(event.get("api_version") or ""), key, text))
    return found


def _chunks(url: str, starts: range, hi: int, customers: int) -> None:
    rows = templates()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_TEMPLATES)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO fill_templates VALUES (%s, %s, %s, %s, %s)", rows)
        conn.execute("SET synchronous_commit = off")
        for start in starts:
            end = min(hi, start + CHUNK)
            params = {"lo": start, "hi": end, "customers": customers, "templates": len(rows)}
            conn.execute(_EVENTS, params)
            conn.execute(_PER_EVENT, params)
            say(f"growth: filled events {start:,} to {end:,}")


def fill(url: str, lo: int, hi: int) -> float:
    """Add events `lo` to `hi - 1` and their mirror rows, then VACUUM ANALYZE; returns the
    seconds it took. Two connections fill alternate chunks (the machine's two cores)."""
    started, customers = time.monotonic(), max(1, hi // EVENTS_PER_CUSTOMER)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_MIRROR, {"c_lo": lo // EVENTS_PER_CUSTOMER, "c_hi": customers})
    with ThreadPoolExecutor(FILLERS) as pool:
        steps = [range(lo + i * CHUNK, hi, FILLERS * CHUNK) for i in range(FILLERS)]
        for done in [pool.submit(_chunks, url, s, hi, customers) for s in steps]:
            done.result()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.monotonic() - started
