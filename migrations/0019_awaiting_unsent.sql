-- A charge's upsert releases the unsent notifications waiting for it (`awaits_charge = id AND
-- sent_at IS NULL`, worker/mirror/queries.py). With notifications_awaiting holding every row that
-- ever awaited a charge, the planner ANDed it with notifications_unsent, whose bitmap reads the
-- whole unsent outbox: during a catch-up that is tens of thousands of entries per charge, and the
-- dead ones a bitmap scan never marks. Holding only the unsent awaiting rows, this index answers
-- the whole predicate alone (a handful of rows), whatever the outbox holds.
DROP INDEX IF EXISTS notifications_awaiting;
CREATE INDEX notifications_awaiting ON notifications (awaits_charge)
    WHERE awaits_charge IS NOT NULL AND sent_at IS NULL;
