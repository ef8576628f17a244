output "gateway_url" {
  description = "HTTPS URL of the gateway (TELEMETRY_GATEWAY_ADDR of the exporter; the audience of its ID tokens)."
  value       = google_cloud_run_v2_service.gateway.uri
}

output "function_urls" {
  description = "URL of each function, by job (export, cleanup, metrics)."
  value       = { for key, fn in google_cloudfunctions2_function.job : key => fn.url }
}

output "function_names" {
  description = "Function name of each job, for gcloud functions logs read / describe."
  value       = { for key, fn in google_cloudfunctions2_function.job : key => fn.name }
}

output "scheduler_jobs" {
  description = "Cloud Scheduler job of each function, for `gcloud scheduler jobs run` during verification."
  value       = { for key, job in google_cloud_scheduler_job.job : key => job.name }
}

output "function_source_object" {
  description = "gs:// path of the deployed source zip; its name is the zip's SHA-256."
  value       = "gs://${google_storage_bucket.function_source.name}/${google_storage_bucket_object.function_source.name}"
}

output "pubsub_topic" {
  description = "Topic the gateway publishes events to (TELEMETRY_PUBSUB_TOPIC)."
  value       = google_pubsub_topic.events.id
}

output "pubsub_deadletter_topic" {
  description = "Topic the gateway publishes unpublishable events to, with the reason (TELEMETRY_PUBSUB_DEADLETTER_TOPIC)."
  value       = google_pubsub_topic.gateway_deadletter.id
}

output "deadletter_subscriptions" {
  description = "Pull subscriptions that hold dead-lettered messages for inspection."
  value       = { for key, sub in google_pubsub_subscription.deadletter_hold : key => sub.name }
}

output "bigquery_table" {
  description = "Fully qualified BigQuery table the events land in (project.dataset.table)."
  value       = "${google_bigquery_table.events.project}.${google_bigquery_table.events.dataset_id}.${google_bigquery_table.events.table_id}"
}

output "instance_connection_name" {
  description = "Cloud SQL instance connection name (INSTANCE_CONNECTION_NAME; argument of cloud-sql-proxy)."
  value       = google_sql_database_instance.main.connection_name
}

output "database_name" {
  description = "Database holding the export queue (DB_NAME)."
  value       = google_sql_database.telemetry.name
}

output "database_users" {
  description = "IAM database user of each function (DB_USER)."
  value       = { for key, user in google_sql_user.function : key => user.name }
}

output "service_accounts" {
  description = "Service account email of each workload."
  value = merge(
    { for key, sa in google_service_account.function : key => sa.email },
    {
      gateway   = google_service_account.gateway.email
      scheduler = google_service_account.scheduler.email
      build     = google_service_account.build.email
      bigquery  = google_service_account.bigquery_writer.email
    },
  )
}

output "images_repository" {
  description = "Docker repository for the gateway image (argument of scripts/build_gateway_image.sh)."
  value       = local.images_repository
}

output "build_service_account" {
  description = "Full resource name of the build service account: BUILD_SERVICE_ACCOUNT of scripts/build_gateway_image.sh."
  value       = google_service_account.build.id
}

output "build_staging_dir" {
  description = "Where scripts/build_gateway_image.sh stages the build context (BUILD_STAGING_DIR): the build service account can read it."
  value       = "gs://${google_storage_bucket.function_source.name}/gateway-build-source"
}

output "export_schedule" {
  description = "The export job's cron schedule after the instance's spread offset (docs/capacity.md, Schedule spread)."
  value       = module.export_schedule.schedule
}

output "dashboard_url" {
  description = "Cloud Monitoring dashboard of the pipeline."
  value       = "https://console.cloud.google.com/monitoring/dashboards/builder/${element(split("/", google_monitoring_dashboard.telemetry.id), 3)}?project=${var.project_id}"
}
