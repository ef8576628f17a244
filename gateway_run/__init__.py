"""The Telemetry Gateway: gRPC on Cloud Run that validates, redacts and publishes events to Pub/Sub."""
