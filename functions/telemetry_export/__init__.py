"""Job logic of the Cloud Functions (exporter, cleanup, metrics), recording, the store and the CLI."""
