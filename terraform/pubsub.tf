# Where events go after the gateway.
#
#   gateway ──► events topic ──► BigQuery subscription ──► events table (one row per message)
#           │                          └─ after N failed deliveries ──► bigquery dead-letter topic ──► hold subscription
#           └─► gateway dead-letter topic (events that can never be published, with the reason) ──► hold subscription
#
# A topic without subscriptions drops what is published to it, so each dead-letter topic has a pull subscription
# that keeps its messages for inspection (`telemetry-export tail` or `gcloud pubsub subscriptions pull`).

locals {
  hold_retention = "604800s" # 7 days, Pub/Sub's maximum for unacknowledged messages
}

resource "google_pubsub_topic" "events" {
  project                    = var.project_id
  name                       = "${local.prefix}-events"
  message_retention_duration = var.topic_message_retention == "" ? null : var.topic_message_retention

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "gateway_deadletter" {
  project = var.project_id
  name    = "${local.prefix}-events-deadletter"

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "bigquery_deadletter" {
  project = var.project_id
  name    = "${local.prefix}-events-bigquery-deadletter"

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_subscription" "deadletter_hold" {
  for_each = {
    gateway  = google_pubsub_topic.gateway_deadletter.id
    bigquery = google_pubsub_topic.bigquery_deadletter.id
  }

  project                    = var.project_id
  name                       = "${local.prefix}-${each.key}-deadletter-hold"
  topic                      = each.value
  message_retention_duration = local.hold_retention
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = "" # never expire, even when nobody pulls for a long time
  }
}

# --- The gateway publishes (and its health check reads the topic) ------------------------------------------------

resource "google_pubsub_topic_iam_member" "gateway_publishes" {
  for_each = {
    events     = google_pubsub_topic.events.id
    deadletter = google_pubsub_topic.gateway_deadletter.id
  }

  project = var.project_id
  topic   = each.value
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.gateway.email}"
}

resource "google_pubsub_topic_iam_member" "gateway_reads_topic" {
  project = var.project_id
  topic   = google_pubsub_topic.events.id
  role    = "roles/pubsub.viewer"
  member  = "serviceAccount:${google_service_account.gateway.email}"
}

# --- BigQuery sink -----------------------------------------------------------------------------------------------

locals {
  # var.bigquery_readers as dataset access entries: BigQuery's access list names users and service accounts by
  # email (user_by_email), groups by group_by_email and domains by domain.
  bigquery_reader_access = [
    for member in var.bigquery_readers : {
      kind  = split(":", member)[0]
      value = join(":", slice(split(":", member), 1, length(split(":", member))))
    }
  ]
}

# The access blocks are authoritative: they replace BigQuery's default dataset access (project owners, editors and
# viewers through special groups). What remains: project owners administer it, bigquery_readers read it, and the
# sink's writer account writes the events table through a table-level grant below.
resource "google_bigquery_dataset" "telemetry" {
  project       = var.project_id
  dataset_id    = replace("${local.prefix}_telemetry", "-", "_")
  friendly_name = "Telemetry events"
  description   = "Events published by the telemetry gateway, written by a Pub/Sub BigQuery subscription."
  location      = coalesce(var.bigquery_location, var.region)

  access {
    role          = "OWNER"
    special_group = "projectOwners"
  }

  dynamic "access" {
    for_each = [for reader in local.bigquery_reader_access : reader if contains(["user", "serviceAccount"], reader.kind)]
    content {
      role          = "READER"
      user_by_email = access.value.value
    }
  }
  dynamic "access" {
    for_each = [for reader in local.bigquery_reader_access : reader if reader.kind == "group"]
    content {
      role           = "READER"
      group_by_email = access.value.value
    }
  }
  dynamic "access" {
    for_each = [for reader in local.bigquery_reader_access : reader if reader.kind == "domain"]
    content {
      role   = "READER"
      domain = access.value.value
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_bigquery_table" "events" {
  project     = var.project_id
  dataset_id  = google_bigquery_dataset.telemetry.dataset_id
  table_id    = "events"
  description = "One row per Pub/Sub message: data is the gateway's JSON body {metadata, event}; attributes carry event.feature, event.action and friends. Deduplicate on JSON_VALUE(data, '$.event.id'): delivery is at least once."

  # Terraform only: a plan that would delete or replace the table fails; the console, bq and the API still can.
  deletion_protection = var.deletion_protection

  time_partitioning {
    type          = "DAY"
    field         = "publish_time"
    expiration_ms = var.bigquery_partition_expiration_days == 0 ? null : var.bigquery_partition_expiration_days * 86400000
  }

  # The columns a BigQuery subscription writes when it uses neither the topic's nor the table's schema and
  # write_metadata is on.
  schema = jsonencode([
    { name = "subscription_name", type = "STRING", mode = "NULLABLE", description = "Subscription that wrote the row." },
    { name = "message_id", type = "STRING", mode = "NULLABLE", description = "Pub/Sub message ID." },
    { name = "publish_time", type = "TIMESTAMP", mode = "NULLABLE", description = "When the gateway published the event." },
    { name = "data", type = "JSON", mode = "NULLABLE", description = "Message body: {\"metadata\": ..., \"event\": ...} (protojson)." },
    { name = "attributes", type = "JSON", mode = "NULLABLE", description = "Message attributes (event.feature, event.action, ...)." },
  ])
}

# The subscription writes as its own service account, not as the Pub/Sub service agent that every subscription of
# the project shares: only this sink can write the table. (Whoever applies needs iam.serviceAccounts.actAs on it:
# project Owner or Service Account User.)
resource "google_bigquery_table_iam_member" "sink_writes_events" {
  for_each = toset(["roles/bigquery.dataEditor", "roles/bigquery.metadataViewer"])

  project    = var.project_id
  dataset_id = google_bigquery_table.events.dataset_id
  table_id   = google_bigquery_table.events.table_id
  role       = each.value
  member     = "serviceAccount:${google_service_account.bigquery_writer.email}"
}

resource "google_pubsub_subscription" "bigquery" {
  project = var.project_id
  name    = "${local.prefix}-events-bigquery"
  topic   = google_pubsub_topic.events.id

  bigquery_config {
    table                 = "${google_bigquery_table.events.project}.${google_bigquery_table.events.dataset_id}.${google_bigquery_table.events.table_id}"
    service_account_email = google_service_account.bigquery_writer.email
    use_topic_schema      = false
    use_table_schema      = false
    write_metadata        = true
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.bigquery_deadletter.id
    max_delivery_attempts = var.bigquery_max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [google_bigquery_table_iam_member.sink_writes_events]
}

# Dead-lettering is done by the Pub/Sub service agent (whatever account writes to BigQuery): it must be able to
# publish to the dead-letter topic and to acknowledge (subscribe to) the source subscription. It cannot read the
# events table.
resource "google_pubsub_topic_iam_member" "service_agent_deadletters" {
  project = var.project_id
  topic   = google_pubsub_topic.bigquery_deadletter.id
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "service_agent_acks_bigquery" {
  project      = var.project_id
  subscription = google_pubsub_subscription.bigquery.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}
