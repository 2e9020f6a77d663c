-- How many times the sweeper has re-sent a pending event. The first re-send is an ordinary
-- message naming many keys, as the receiver's are (a backlog after a Redis outage drains at the
-- pipeline's pace); an event stranded again after that is sent as a suspect, whose attempt is
-- counted before it runs, so a handler that kills its worker still runs out of attempts
-- (worker/sweeper.py). A constant default: adding the column rewrites nothing.
ALTER TABLE stripe_events ADD COLUMN IF NOT EXISTS sweeps integer NOT NULL DEFAULT 0;
