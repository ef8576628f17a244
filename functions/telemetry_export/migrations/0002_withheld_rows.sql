-- Rows the exporter holds back because they fall outside today's export scope
-- (TELEMETRY_EXPORT_MODE / TELEMETRY_EXPORT_FEATURES). They are set aside like quarantined rows
-- (quarantined_at, quarantine_reason: never backlog, deleted after the quarantine retention,
-- listed by `quarantine list`, brought back by `quarantine requeue`), and this flag tells them
-- apart from rows that can never be sent, so that queue figures and alerts count them apart.
-- A constant default: Postgres adds the column without rewriting the table.
ALTER TABLE telemetry_events_export_queue ADD COLUMN IF NOT EXISTS withheld boolean NOT NULL DEFAULT false;
