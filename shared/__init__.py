"""What the receiver, the workers and the CLI share: settings, database, broker, logging."""
