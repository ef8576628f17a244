"""Generated bindings of proto/telemetrygateway/v1 (python scripts/generate_api.py)."""
