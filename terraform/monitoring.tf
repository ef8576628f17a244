# Observability: the custom gauges the metrics function writes, log-based metrics counted from the jobs' and the
# gateway's structured run logs, alert policies, and the dashboard (terraform/dashboards/telemetry-export.json).

locals {
  metric_prefix = "custom.googleapis.com/telemetry_export"

  # Written by report_queue_metrics with create_time_series on a generic_task resource. Declaring them here fixes
  # their kind and type before the first write, and lets alert policies refer to them on the first apply.
  queue_metrics = {
    queue_backlog = {
      value_type = "INT64", unit = "1"
      display    = "Export queue backlog"
      help       = "Queue rows not yet exported and not quarantined."
    }
    queue_oldest_unexported_age_seconds = {
      value_type = "INT64", unit = "s"
      display    = "Oldest unexported event age"
      help       = "Age in seconds of the oldest unexported, unquarantined row (0 when the queue is empty)."
    }
    queue_in_flight = {
      value_type = "INT64", unit = "1"
      display    = "Rows claimed by a running export"
      help       = "Rows whose lease has not expired: claimed by an exporter and not yet acknowledged."
    }
    queue_quarantined = {
      value_type = "INT64", unit = "1"
      display    = "Quarantined rows"
      help       = "Rows set aside because they cannot be decoded or were rejected permanently."
    }
    queue_exported_retained = {
      value_type = "INT64", unit = "1"
      display    = "Exported rows retained"
      help       = "Exported rows kept until the cleanup retention window passes."
    }
    exported_last_hour = {
      value_type = "INT64", unit = "1"
      display    = "Events exported in the last hour"
      help       = "Rows marked exported during the past hour."
    }
    queue_estimated_drain_seconds = {
      value_type = "DOUBLE", unit = "s"
      display    = "Estimated time to drain the backlog"
      help       = "Backlog divided by the recent export rate, in seconds."
    }
  }

  function_services = [for job in local.jobs : job.function_name]
  functions_log_filter = join(" ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=(${join(" OR ", [for name in local.function_services : "\"${name}\""])})",
  ])
  gateway_log_filter = "resource.type=\"cloud_run_revision\" resource.labels.service_name=\"${google_cloud_run_v2_service.gateway.name}\""

  # Log-based metrics: counters of run log lines, and distributions of the counts each line carries.
  log_distributions = {
    exported_events = {
      filter = "${local.functions_log_filter} jsonPayload.job=\"export\" jsonPayload.exported>=0"
      field  = "jsonPayload.exported"
      help   = "Events acknowledged by the gateway, per export run."
    }
    failed_events = {
      filter = "${local.functions_log_filter} jsonPayload.job=\"export\" jsonPayload.failed>=0"
      field  = "jsonPayload.failed"
      help   = "Events sent but not acknowledged (to be resent), per export run."
    }
    quarantined_events = {
      filter = "${local.functions_log_filter} jsonPayload.job=\"export\" jsonPayload.quarantined>=0"
      field  = "jsonPayload.quarantined"
      help   = "Rows quarantined, per export run."
    }
    deleted_rows = {
      filter = "${local.functions_log_filter} jsonPayload.job=\"cleanup\" jsonPayload.deleted>=0"
      field  = "jsonPayload.deleted"
      help   = "Exported rows deleted, per cleanup run."
    }
    gateway_published_events = {
      filter = "${local.gateway_log_filter} jsonPayload.events_published>=0"
      field  = "jsonPayload.events_published"
      help   = "Events published to Pub/Sub, per gateway stream."
    }
    gateway_dead_lettered_events = {
      filter = "${local.gateway_log_filter} jsonPayload.events_dead_lettered>=0"
      field  = "jsonPayload.events_dead_lettered"
      help   = "Events sent to the gateway dead-letter topic, per gateway stream."
    }
  }

  notification_channels = concat(
    var.notification_channels,
    [for channel in google_monitoring_notification_channel.email : channel.id],
  )
}

resource "google_monitoring_metric_descriptor" "queue" {
  for_each = local.queue_metrics

  project      = var.project_id
  type         = "${local.metric_prefix}/${each.key}"
  metric_kind  = "GAUGE"
  value_type   = each.value.value_type
  unit         = each.value.unit
  display_name = each.value.display
  description  = each.value.help

  depends_on = [google_project_service.enabled]
}

resource "google_logging_metric" "job_runs" {
  project     = var.project_id
  name        = "telemetry_export/job_runs"
  description = "Run log lines of the export, cleanup and metrics jobs, by job."
  filter      = "${local.functions_log_filter} jsonPayload.job=(\"export\" OR \"cleanup\" OR \"metrics\")"

  label_extractors = {
    job = "EXTRACT(jsonPayload.job)"
  }

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "job"
      value_type  = "STRING"
      description = "export, cleanup or metrics"
    }
  }
}

resource "google_logging_metric" "job_errors" {
  project     = var.project_id
  name        = "telemetry_export/job_errors"
  description = "ERROR or worse log lines from the three functions (failed runs, unreachable gateway or database)."
  filter      = "${local.functions_log_filter} severity>=ERROR"

  label_extractors = {
    service = "EXTRACT(resource.labels.service_name)"
  }

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "service"
      value_type  = "STRING"
      description = "Function (Cloud Run service) name"
    }
  }
}

# Streams ended by a graceful shutdown also end UNAVAILABLE (the exporter reconnects elsewhere);
# their lines carry shutdown=true and are not errors.
resource "google_logging_metric" "gateway_errors" {
  project     = var.project_id
  name        = "telemetry_export/gateway_errors"
  description = "Gateway trouble: ERROR log lines, and streams that ended with publish failures or a server-side status (a client's INVALID_ARGUMENT or UNAUTHENTICATED is the client's problem and is not counted)."
  filter      = "${local.gateway_log_filter} (severity>=ERROR OR jsonPayload.events_failed>0 OR (jsonPayload.status=(\"INTERNAL\" OR \"UNKNOWN\" OR \"UNAVAILABLE\" OR \"DEADLINE_EXCEEDED\") AND NOT jsonPayload.shutdown=true))"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

resource "google_logging_metric" "counts" {
  for_each = local.log_distributions

  project         = var.project_id
  name            = "telemetry_export/${each.key}"
  description     = each.value.help
  filter          = each.value.filter
  value_extractor = "EXTRACT(${each.value.field})"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 2
      scale              = 1
    }
  }
}

resource "google_monitoring_notification_channel" "email" {
  for_each = var.alert_email == null ? toset([]) : toset([var.alert_email])

  project      = var.project_id
  display_name = "telemetry-export alerts (${each.value})"
  type         = "email"
  labels = {
    email_address = each.value
  }
}

# --- Alert policies ----------------------------------------------------------------------------------------------

resource "google_monitoring_alert_policy" "backlog_growing" {
  project               = var.project_id
  display_name          = "telemetry-export: export backlog keeps growing"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "Backlog larger than ${var.alert_backlog_growth_window_seconds}s earlier, continuously"
    condition_prometheus_query_language {
      # PromQL name of custom.googleapis.com/telemetry_export/queue_backlog; delta() works on gauges.
      query               = "delta(custom_googleapis_com:telemetry_export_queue_backlog{monitored_resource=\"generic_task\"}[${var.alert_backlog_growth_window_seconds}s]) > 0"
      duration            = "${var.alert_backlog_growth_window_seconds}s"
      evaluation_interval = "60s"
    }
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "telemetry-export backlog growing"
    content   = "Events are queued faster than they are exported. Check the export function's logs (jsonPayload.job=\"export\": exported, failed, quarantined), the gateway's errors, and `telemetry-export queue status`. Exports catch up on their own once the cause is fixed."
  }

  depends_on = [google_monitoring_metric_descriptor.queue]
}

resource "google_monitoring_alert_policy" "oldest_event_too_old" {
  project               = var.project_id
  display_name          = "telemetry-export: oldest unexported event too old"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "Oldest unexported event older than ${var.alert_oldest_event_age_seconds}s"
    condition_threshold {
      filter          = "resource.type = \"generic_task\" AND metric.type = \"${google_monitoring_metric_descriptor.queue["queue_oldest_unexported_age_seconds"].type}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_oldest_event_age_seconds
      duration        = "600s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "telemetry-export is not draining the queue"
    content   = "The oldest queued event has waited longer than expected: exports are failing or not running. Check the Scheduler job and the export function's logs; `telemetry-export export --drain` drains by hand."
  }
}

resource "google_monitoring_alert_policy" "metrics_missing" {
  project               = var.project_id
  display_name          = "telemetry-export: queue metrics missing"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "No backlog gauge for ${var.alert_metrics_absent_seconds}s"
    condition_absent {
      filter   = "resource.type = \"generic_task\" AND metric.type = \"${google_monitoring_metric_descriptor.queue["queue_backlog"].type}\""
      duration = "${var.alert_metrics_absent_seconds}s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "telemetry-export metrics job is silent"
    content   = "report_queue_metrics has not written the backlog gauge: the other alerts are blind. Check its Scheduler job and logs (jsonPayload.job=\"metrics\")."
  }
}

resource "google_monitoring_alert_policy" "export_errors" {
  project               = var.project_id
  display_name          = "telemetry-export: job errors"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "At least ${var.alert_job_error_lines} ERROR lines from one function in ${var.alert_job_error_window_seconds}s"
    condition_threshold {
      filter = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.job_errors.name}\""
      # At least N lines: the sum over the window is greater than N - 1.
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_job_error_lines - 1
      duration        = "0s"
      aggregations {
        alignment_period     = "${var.alert_job_error_window_seconds}s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.service"]
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "telemetry-export jobs keep failing"
    content   = "A function failed ${var.alert_job_error_lines} or more times in ${var.alert_job_error_window_seconds}s (rows stay queued; nothing is lost). Find the lines with: ${local.functions_log_filter} severity>=ERROR. docs/runbook.md, job errors."
  }
}

resource "google_monitoring_alert_policy" "gateway_errors" {
  project               = var.project_id
  display_name          = "telemetry-export: gateway errors"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "More than ${var.alert_gateway_errors_per_5m} gateway ERROR lines in 5 minutes"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.gateway_errors.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_gateway_errors_per_5m
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "telemetry gateway errors"
    content   = "The gateway is failing streams or publishes (events it could not publish are left unacknowledged and resent by the exporter). Find the lines with: ${google_logging_metric.gateway_errors.filter}"
  }
}

resource "google_monitoring_alert_policy" "dead_lettered" {
  project               = var.project_id
  display_name          = "telemetry-export: events dead-lettered"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "Gateway published to its dead-letter topic"
    condition_threshold {
      filter          = "resource.type = \"pubsub_topic\" AND resource.labels.topic_id = \"${google_pubsub_topic.gateway_deadletter.name}\" AND metric.type = \"pubsub.googleapis.com/topic/send_message_operation_count\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  conditions {
    display_name = "BigQuery subscription dead-lettered messages"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${google_pubsub_subscription.bigquery.name}\" AND metric.type = \"pubsub.googleapis.com/subscription/dead_letter_message_count\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "telemetry events dead-lettered"
    content   = "Events could not be published (gateway: invalid or oversized, reason in the message) or could not be written to BigQuery. Inspect them: gcloud pubsub subscriptions pull ${local.prefix}-gateway-deadletter-hold / ${local.prefix}-bigquery-deadletter-hold --limit=10"
  }
}

resource "google_monitoring_alert_policy" "bigquery_sink_stalled" {
  project               = var.project_id
  display_name          = "telemetry-export: BigQuery sink not delivering"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "More than ${var.alert_bigquery_backlog_messages} undelivered messages for 15 minutes"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${google_pubsub_subscription.bigquery.name}\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_bigquery_backlog_messages
      duration        = "900s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  conditions {
    display_name = "Oldest unacknowledged message older than ${var.alert_bigquery_oldest_unacked_seconds}s"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${google_pubsub_subscription.bigquery.name}\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_bigquery_oldest_unacked_seconds
      duration        = "300s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "telemetry events are not reaching BigQuery"
    content   = "The BigQuery subscription ${google_pubsub_subscription.bigquery.name} is not delivering. Pub/Sub drops what stays unacknowledged for 7 days: fix it before then. docs/runbook.md, BigQuery sink not delivering."
  }
}

# --- Dashboard ---------------------------------------------------------------------------------------------------

resource "google_monitoring_dashboard" "telemetry" {
  project = var.project_id
  dashboard_json = templatefile("${path.module}/dashboards/telemetry-export.json", {
    gateway_service        = google_cloud_run_v2_service.gateway.name
    events_topic           = google_pubsub_topic.events.name
    gateway_deadletter     = google_pubsub_topic.gateway_deadletter.name
    bigquery_subscription  = google_pubsub_subscription.bigquery.name
    log_metric_prefix      = "logging.googleapis.com/user/telemetry_export"
    custom_metric_prefix   = local.metric_prefix
    dashboard_display_name = "telemetry-export (${local.prefix})"
  })

  depends_on = [
    google_monitoring_metric_descriptor.queue,
    google_logging_metric.counts,
    google_logging_metric.job_runs,
  ]
}
