# One Cloud Scheduler job per function. Each call carries an OIDC token minted for the scheduler service account
# whose audience is the function's own URL (what the function's Cloud Run front end checks). The attempt deadline
# is 60 s above the function timeout, so Scheduler never gives up on a run that is still inside its time budget,
# and retries are few: the next scheduled run picks up whatever a failed one left.
#
# The export schedule is spread over its interval by a minute offset derived from the instance ID
# (modules/schedule_spread), so a fleet of instances does not reach the gateway in the same minute.

module "export_schedule" {
  source = "./modules/schedule_spread"

  schedule = var.export_function.schedule
  key      = var.instance_id
}

locals {
  schedules = {
    export  = module.export_schedule.schedule
    cleanup = var.cleanup_function.schedule
    metrics = var.metrics_function.schedule
  }
}

resource "google_cloud_scheduler_job" "job" {
  for_each = google_cloudfunctions2_function.job

  project     = var.project_id
  region      = var.region
  name        = each.value.name
  description = "Calls ${local.jobs[each.key].entry_point} on ${local.schedules[each.key]}."
  schedule    = local.schedules[each.key]
  time_zone   = var.schedule_time_zone
  paused      = var.schedules_paused

  attempt_deadline = "${local.jobs[each.key].settings.timeout_seconds + 60}s"

  retry_config {
    retry_count          = local.jobs[each.key].settings.retry_count
    min_backoff_duration = "30s"
    max_backoff_duration = "300s"
    max_doublings        = 3
  }

  http_target {
    http_method = "POST"
    uri         = each.value.url
    body        = base64encode("{}")
    headers = {
      "Content-Type" = "application/json"
    }

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = each.value.url
    }
  }

  # The metrics job writes the custom gauges: their descriptors must exist first, with the kinds declared here.
  depends_on = [
    google_cloud_run_v2_service_iam_member.scheduler_invokes_function,
    google_monitoring_metric_descriptor.queue,
  ]
}
