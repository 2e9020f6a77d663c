"""The workers: ordered, idempotent processing of stored events, retries, dead letters, sweeper."""
