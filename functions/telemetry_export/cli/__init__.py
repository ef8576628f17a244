"""The telemetry-export command line."""
