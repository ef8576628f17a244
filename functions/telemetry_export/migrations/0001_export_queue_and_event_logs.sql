-- The export queue: the reference columns (id, timestamp, payload_pb, exported_at) plus the
-- state leases, attempt counting and quarantine need.
CREATE TABLE IF NOT EXISTS telemetry_events_export_queue (
    id uuid PRIMARY KEY,
    timestamp timestamptz NOT NULL,
    -- Redacted before it is stored: exactly the bytes that will leave the instance.
    payload_pb bytea NOT NULL,
    exported_at timestamptz,
    -- A claim: the row belongs to lease_owner's run until leased_until.
    leased_until timestamptz,
    lease_owner uuid,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    -- Rows that can never be exported are set aside with their reason, never deleted unseen.
    quarantined_at timestamptz,
    quarantine_reason text
);

-- Oldest-first claims, the backlog count and the oldest age all scan only exportable rows.
CREATE INDEX IF NOT EXISTS telemetry_events_export_queue_exportable
    ON telemetry_events_export_queue (timestamp)
    WHERE exported_at IS NULL AND quarantined_at IS NULL;

-- Cleanup deletes exported rows by age.
CREATE INDEX IF NOT EXISTS telemetry_events_export_queue_exported
    ON telemetry_events_export_queue (exported_at)
    WHERE exported_at IS NOT NULL;

CREATE INDEX IF NOT EXISTS telemetry_events_export_queue_quarantined
    ON telemetry_events_export_queue (quarantined_at)
    WHERE quarantined_at IS NOT NULL;

-- Local analytics: a best-effort, unredacted translation of every recorded event.
CREATE TABLE IF NOT EXISTS event_logs (
    id bigserial PRIMARY KEY,
    -- The telemetry event's ID; recording twice with the same ID is reported, not stored twice.
    event_id uuid UNIQUE,
    name text NOT NULL,
    url text NOT NULL DEFAULT '',
    user_id bigint NOT NULL DEFAULT 0,
    anonymous_user_id text NOT NULL,
    source text NOT NULL,
    argument jsonb,
    public_argument jsonb NOT NULL DEFAULT '{}'::jsonb,
    version text NOT NULL DEFAULT '',
    timestamp timestamptz NOT NULL,
    feature_flags jsonb,
    cohort_id text,
    first_source_url text,
    last_source_url text,
    referrer text,
    device_session_id text,
    billing_product_category text,
    billing_event_id text,
    client text
);

CREATE INDEX IF NOT EXISTS event_logs_timestamp ON event_logs (timestamp);
CREATE INDEX IF NOT EXISTS event_logs_name ON event_logs (name);
