# Shared names and the APIs everything else needs. Resource files are split by concern: iam.tf (who may do what),
# database.tf, functions.tf, scheduler.tf, gateway.tf, pubsub.tf (topics and the BigQuery sink), monitoring.tf.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  prefix = var.name_prefix

  # The three scheduled jobs. Keys are used everywhere (service accounts, functions, scheduler jobs, DB users),
  # so a job added here gets all of them or the wiring tests fail.
  jobs = {
    export = {
      function_name = "${local.prefix}-export-events"
      entry_point   = "export_events"
      account_id    = "${local.prefix}-exporter"
      description   = "Claims queued telemetry events, redacts them and streams them to the gateway."
      settings      = var.export_function
    }
    cleanup = {
      function_name = "${local.prefix}-cleanup-events"
      entry_point   = "cleanup_exported_events"
      account_id    = "${local.prefix}-cleanup"
      description   = "Deletes exported queue rows past the retention window."
      settings      = var.cleanup_function
    }
    metrics = {
      function_name = "${local.prefix}-queue-metrics"
      entry_point   = "report_queue_metrics"
      account_id    = "${local.prefix}-metrics"
      description   = "Writes the queue backlog gauges to Cloud Monitoring."
      settings      = var.metrics_function
    }
  }

  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# Every API the stack uses. docs/deploy.md step 0 enables this same list with gcloud before anything else (a test
# compares the two), because Terraform itself needs Service Usage and Resource Manager to read the project and
# enable the rest, and the secrets are created before the first apply. Keeping them here as well documents the
# dependency, and `disable_on_destroy = false` means a teardown leaves them enabled.
resource "google_project_service" "enabled" {
  for_each = toset(concat(
    [
      "artifactregistry.googleapis.com",
      "bigquery.googleapis.com",
      "cloudbuild.googleapis.com",
      "cloudfunctions.googleapis.com",
      "cloudresourcemanager.googleapis.com",
      "cloudscheduler.googleapis.com",
      "iam.googleapis.com",
      "logging.googleapis.com",
      "monitoring.googleapis.com",
      "pubsub.googleapis.com",
      "run.googleapis.com",
      "secretmanager.googleapis.com",
      "serviceusage.googleapis.com",
      "sqladmin.googleapis.com",
      "storage.googleapis.com",
    ],
    var.db_private_network == null ? [] : ["compute.googleapis.com", "servicenetworking.googleapis.com"],
  ))

  project = var.project_id
  service = each.value

  # Other workloads in the project may use these APIs: removing this stack must not switch them off.
  disable_on_destroy = false
}
