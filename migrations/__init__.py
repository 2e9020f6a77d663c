"""The SQL migrations, installed as the package `shared.migrations` (see pyproject.toml) so that
`stripe-ingest migrate` reads them through importlib.resources from a wheel as from a checkout."""
