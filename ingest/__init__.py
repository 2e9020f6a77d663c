"""The receiver: verify the signature, store the raw event, enqueue its id, answer 200."""
