# The three Cloud Functions (gen2). One source zip, built reproducibly by scripts/package_functions.py, serves all
# three; the object is named after the zip's SHA-256, so a code change produces a new object name and therefore a
# new deployment, while re-packaging unchanged code changes nothing.
#
# The zip is needed to create or update the functions, not to destroy them: its hash is read only when the file
# exists, and the bucket object's precondition refuses a plan that would upload a missing zip
# (tests/terraform/test_terraform_evaluation.py runs a destroy without it).

locals {
  function_source_zip    = coalesce(var.function_source_zip, "${path.module}/../build/functions-source.zip")
  function_source_sha256 = fileexists(local.function_source_zip) ? filesha256(local.function_source_zip) : "missing"

  db_environment = {
    INSTANCE_CONNECTION_NAME = google_sql_database_instance.main.connection_name
    DB_NAME                  = google_sql_database.telemetry.name
    DB_IAM_AUTH              = "true"
    DB_IP_TYPE               = local.db_private ? "private" : "public"
  }

  export_lease_seconds = coalesce(var.export_function.lease_seconds, var.export_function.timeout_seconds + 60)

  function_environment = {
    export = {
      TELEMETRY_GATEWAY_ADDR            = google_cloud_run_v2_service.gateway.uri
      TELEMETRY_INSTANCE_ID             = var.instance_id
      TELEMETRY_EXTERNAL_URL            = var.external_url
      TELEMETRY_ALLOWLIST               = join(",", var.allowlist)
      TELEMETRY_EXPORT_MODE             = var.export_mode
      TELEMETRY_EXPORT_FEATURES         = join(",", var.export_features)
      TELEMETRY_EXPORT_BATCH_SIZE       = tostring(var.export_batch_size)
      TELEMETRY_EXPORT_MAX_ATTEMPTS     = tostring(var.export_max_attempts)
      TELEMETRY_EXPORT_LEASE            = "${local.export_lease_seconds}s"
      TELEMETRY_EXPORT_FUNCTION_TIMEOUT = "${var.export_function.timeout_seconds}s"
      TELEMETRY_EXPORT_DEADLINE_MARGIN  = "${var.export_deadline_margin_seconds}s"
    }
    cleanup = {
      TELEMETRY_CLEANUP_RETENTION            = var.cleanup_retention
      TELEMETRY_CLEANUP_QUARANTINE_RETENTION = var.cleanup_quarantine_retention
      # Stop deleting 30 s before the platform would kill the run.
      TELEMETRY_CLEANUP_TIME_BUDGET = "${max(var.cleanup_function.timeout_seconds - 30, 30)}s"
    }
    metrics = {
      TELEMETRY_METRICS_TASK_ID  = coalesce(var.metrics_task_id, var.instance_id)
      TELEMETRY_METRICS_LOCATION = var.region
    }
  }

  # Secrets become environment variables at instance start; their values never pass through Terraform.
  function_secrets = {
    export = [for secret in compact([var.license_key_secret]) : {
      key     = "TELEMETRY_LICENSE_KEY"
      secret  = secret
      version = var.license_key_secret_version # pinned: a number, never "latest" (variables.tf)
    }]
    cleanup = []
    metrics = []
  }
}

resource "google_storage_bucket" "function_source" {
  name     = "${var.project_id}-${local.prefix}-fn-source"
  project  = var.project_id
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection

  versioning {
    enabled = true
  }

  # The live zip is never deleted by age: the functions' next build and Terraform both need it. A superseded zip is
  # deleted by Terraform when the object is replaced (a new hash is a new object name), which with versioning on
  # keeps it as a noncurrent version for rollbacks; those go after 30 days. The gateway image builds stage their
  # source under gateway-build-source/ (scripts/build_gateway_image.sh), needed only while the build runs.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      age            = 7
      matches_prefix = ["gateway-build-source/"]
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket_object" "function_source" {
  bucket       = google_storage_bucket.function_source.name
  name         = "functions/${local.function_source_sha256}.zip"
  source       = local.function_source_zip
  content_type = "application/zip"

  lifecycle {
    precondition {
      condition     = fileexists(local.function_source_zip)
      error_message = "The functions' source zip is missing: run .venv/bin/python scripts/package_functions.py (or set function_source_zip)."
    }
  }
}

resource "google_cloudfunctions2_function" "job" {
  for_each = local.jobs

  project     = var.project_id
  location    = var.region
  name        = each.value.function_name
  description = each.value.description

  build_config {
    runtime           = var.functions_runtime
    entry_point       = each.value.entry_point
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.images.id

    source {
      storage_source {
        bucket = google_storage_bucket.function_source.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.function[each.key].email
    timeout_seconds                  = each.value.settings.timeout_seconds
    available_memory                 = each.value.settings.memory
    available_cpu                    = each.value.settings.cpu
    max_instance_count               = each.value.settings.max_instances
    min_instance_count               = 0
    max_instance_request_concurrency = 1
    ingress_settings                 = var.function_ingress
    all_traffic_on_latest_revision   = true

    environment_variables = merge(
      local.db_environment,
      {
        DB_USER              = google_sql_user.function[each.key].name
        GOOGLE_CLOUD_PROJECT = var.project_id
        LOG_LEVEL            = var.log_level
      },
      local.function_environment[each.key],
    )

    dynamic "secret_environment_variables" {
      for_each = local.function_secrets[each.key]
      content {
        key        = secret_environment_variables.value.key
        project_id = var.project_id
        secret     = secret_environment_variables.value.secret
        version    = secret_environment_variables.value.version
      }
    }

    # Private-IP database only: route private ranges through the VPC, everything else (gateway, Google APIs) direct.
    direct_vpc_egress = local.db_private ? "VPC_EGRESS_PRIVATE_RANGES_ONLY" : null
    dynamic "direct_vpc_network_interface" {
      for_each = local.db_private ? [1] : []
      content {
        network    = var.db_private_network
        subnetwork = var.db_function_subnetwork
      }
    }
  }

  depends_on = [
    google_project_iam_member.cloudsql,
    google_project_iam_member.build_log_writer,
    google_project_iam_member.build_reads_gcf_sources,
    google_storage_bucket_iam_member.build_reads_source,
    google_artifact_registry_repository_iam_member.build_pushes_images,
    google_secret_manager_secret_iam_member.license_key,
  ]
}

# Cloud Scheduler's service account may invoke the functions (a gen2 function is served by a Cloud Run service of
# the same name, so the invoker grant is on that service).
resource "google_cloud_run_v2_service_iam_member" "scheduler_invokes_function" {
  for_each = google_cloudfunctions2_function.job

  project  = var.project_id
  location = each.value.location
  name     = each.value.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}
