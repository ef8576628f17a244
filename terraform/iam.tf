# One service account per workload, each holding only what its job needs:
#
#   exporter  (export_events)           Cloud SQL client + instance user on this instance; run.invoker on the gateway;
#                                       secretAccessor on the license key secret
#   cleanup   (cleanup_exported_events) Cloud SQL client + instance user on this instance
#   metrics   (report_queue_metrics)    Cloud SQL client + instance user on this instance; monitoring.metricWriter
#   gateway   (Cloud Run)               publisher on the events and dead-letter topics; viewer on the events topic
#                                       (its health check reads the topic); secretAccessor on the service token secret
#   scheduler (Cloud Scheduler)         run.invoker on the three functions only
#   fn-build  (Cloud Build: the function images and the gateway image) reads this stack's source bucket and
#             Google's gcf-v2-sources-<project number>-<region> bucket (IAM condition), pushes images to this
#             stack's repository, writes build logs
#   bq-writer (the BigQuery subscription) writes the events table only
#
# Nothing is granted to allUsers or allAuthenticatedUsers (a test enforces it).

resource "google_service_account" "function" {
  for_each = local.jobs

  project      = var.project_id
  account_id   = each.value.account_id
  display_name = "telemetry-export ${each.key} function"
  description  = "Runs ${each.value.entry_point}: ${each.value.description}"

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "gateway" {
  project      = var.project_id
  account_id   = "${local.prefix}-gateway"
  display_name = "telemetry-export gateway"
  description  = "Runs the Telemetry Gateway on Cloud Run: validates, redacts and publishes events to Pub/Sub."

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${local.prefix}-scheduler"
  display_name = "telemetry-export scheduler"
  description  = "Identity in the OIDC tokens Cloud Scheduler sends to the three functions."

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${local.prefix}-fn-build"
  display_name = "telemetry-export builds"
  description  = "Cloud Build identity that turns the function source zip into container images and builds the gateway image (scripts/build_gateway_image.sh)."

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "bigquery_writer" {
  project      = var.project_id
  account_id   = "${local.prefix}-bq-writer"
  display_name = "telemetry-export BigQuery sink"
  description  = "Identity the BigQuery subscription writes the events table as (bigquery_config.service_account_email), instead of the project-wide Pub/Sub service agent."

  depends_on = [google_project_service.enabled]
}

# --- Cloud SQL: connect (client) and log in with IAM (instance user), on this instance only ------------------------

locals {
  # IAM conditions narrow the project-level Cloud SQL roles to the one instance this stack creates.
  sql_instance_condition = {
    title       = "only-${local.prefix}-instance"
    description = "Limits the grant to the telemetry-export Cloud SQL instance."
    expression  = "resource.type == \"sqladmin.googleapis.com/Instance\" && resource.name == \"projects/${var.project_id}/instances/${local.sql_instance_name}\""
  }

  sql_members = merge(
    { for key, sa in google_service_account.function : key => "serviceAccount:${sa.email}" },
    { for email in var.db_admin_iam_users : "admin:${email}" => "user:${email}" },
  )
  sql_roles = ["roles/cloudsql.client", "roles/cloudsql.instanceUser"]

  sql_grants = {
    for pair in setproduct(keys(local.sql_members), local.sql_roles) :
    "${pair[0]}/${pair[1]}" => { member = local.sql_members[pair[0]], role = pair[1] }
  }
}

resource "google_project_iam_member" "cloudsql" {
  for_each = local.sql_grants

  project = var.project_id
  role    = each.value.role
  member  = each.value.member

  condition {
    title       = local.sql_instance_condition.title
    description = local.sql_instance_condition.description
    expression  = local.sql_instance_condition.expression
  }
}

# --- Metrics function: write the custom gauges -------------------------------------------------------------------

resource "google_project_iam_member" "metrics_writer" {
  project = var.project_id
  role    = "roles/monitoring.metricWriter"
  member  = "serviceAccount:${google_service_account.function["metrics"].email}"
}

# --- Secrets: each readable by the one identity that uses it -------------------------------------------------------

# Secrets are granted on the secret and read at a pinned version (variables.tf refuses "latest").
resource "google_secret_manager_secret_iam_member" "license_key" {
  count = var.license_key_secret == null ? 0 : 1

  project   = var.project_id
  secret_id = var.license_key_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function["export"].email}"
}

resource "google_secret_manager_secret_iam_member" "gateway_service_tokens" {
  count = var.gateway_service_token_secret == null ? 0 : 1

  project   = var.project_id
  secret_id = var.gateway_service_token_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.gateway.email}"
}

# --- Function builds ---------------------------------------------------------------------------------------------

resource "google_project_iam_member" "build_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.build.email}"
}

# The stack's own bucket: the zip Terraform uploads, and the gateway build's staged source.
resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.function_source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}

# Cloud Functions (gen2) copies the source into Google-created buckets named gcf-v2-sources-<project number>-<region>
# (with a key-hash suffix under CMEK), and the build fetches it from there
# (https://cloud.google.com/functions/docs/building). Without read access there the build fails with "Access to
# bucket gcf-v2-sources-... denied" (hashicorp/terraform-provider-google#20571). Google's build service account
# page (https://cloud.google.com/run/docs/configuring/services/build-service-account) asks for Storage Object
# Admin on the project; reading is all the fetch needs, so this is Storage Object Viewer, and only on those
# buckets. The bucket may not exist before the first deploy, hence a condition instead of a bucket-level grant.
resource "google_project_iam_member" "build_reads_gcf_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = "serviceAccount:${google_service_account.build.email}"

  condition {
    title       = "only-gcf-v2-sources-${var.region}"
    description = "Limits the grant to the Cloud Functions source buckets of this project and region."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}\")"
  }
}

resource "google_artifact_registry_repository_iam_member" "build_pushes_images" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.build.email}"
}
