"""Every SQL statement the jobs run: one module per job, all against the schema in migrations/."""
