"""The `stripe-ingest` command line."""
