"""The gateway: composition root, the message pipeline, the officer API and the CLI."""
