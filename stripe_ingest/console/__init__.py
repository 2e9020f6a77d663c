"""The operator console (`python -m stripe_ingest.console`): server-rendered pages over the
CLI's store, with the CLI's rules for replays and resolutions."""
