"""Starting and stopping the real local services (Postgres, the Pub/Sub emulator) for tests and the demo."""
