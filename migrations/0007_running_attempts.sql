-- An event the sweeper re-sends may be one whose handler kills its worker process (a crash, an
-- out-of-memory kill), which no rollback ever records. Such an event is taken alone and its
-- attempt is committed before its handlers run, as a 'running' attempt row; the row becomes the
-- attempt's outcome when it ends. A 'running' row left behind means the worker died in it.
ALTER TABLE event_attempts DROP CONSTRAINT IF EXISTS event_attempts_outcome_check;
ALTER TABLE event_attempts ADD CONSTRAINT event_attempts_outcome_check
    CHECK (outcome IN ('processed', 'ignored', 'failed', 'dead', 'running'));
