# The Telemetry Gateway on Cloud Run (v2 API).
#
# gRPC needs HTTP/2 end to end: the container port is named "h2c" so Cloud Run forwards HTTP/2 cleartext to the
# container, and both probes speak the gRPC health checking protocol (grpc.health.v1.Health) instead of HTTP GET.
# Only IAM principals with roles/run.invoker can call it: the exporter's service account, plus any explicitly
# listed extra invokers (never allUsers).

locals {
  images_repository = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
  gateway_port      = 8080

  # The exporter's stream may stay open for the whole function timeout (its deadline is derived from it), so Cloud
  # Run's request timeout follows it unless set; variables.tf refuses an explicit one that is shorter.
  gateway_request_timeout_seconds = coalesce(var.gateway.request_timeout_seconds, var.export_function.timeout_seconds + 60)

  gateway_environment = {
    GOOGLE_CLOUD_PROJECT                 = var.project_id
    TELEMETRY_PUBSUB_TOPIC               = google_pubsub_topic.events.name
    TELEMETRY_PUBSUB_DEADLETTER_TOPIC    = google_pubsub_topic.gateway_deadletter.name
    TELEMETRY_ALLOWLIST                  = join(",", var.allowlist)
    TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY = join(",", var.gateway_license_public_keys)
    TELEMETRY_GATEWAY_ALLOW_UNLICENSED   = tostring(var.gateway_allow_unlicensed)
    TELEMETRY_GATEWAY_MAX_RECEIVE_BYTES  = tostring(var.gateway_max_receive_bytes)
    LOG_LEVEL                            = var.log_level
  }

  gateway_secret_environment = var.gateway_service_token_secret == null ? {} : {
    TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256 = {
      secret  = var.gateway_service_token_secret
      version = var.gateway_service_token_secret_version # pinned: a number, never "latest" (variables.tf)
    }
  }
}

resource "google_artifact_registry_repository" "images" {
  project       = var.project_id
  location      = var.region
  repository_id = "${local.prefix}-images"
  format        = "DOCKER"
  description   = "Gateway image (scripts/build_gateway_image.sh) and the functions' build images."

  # Keep recent images for rollbacks; everything older than 30 days beyond the newest 10 goes.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_cloud_run_v2_service" "gateway" {
  project     = var.project_id
  location    = var.region
  name        = "${local.prefix}-gateway"
  description = "Telemetry Gateway: gRPC RecordEvents over h2c, publishing to Pub/Sub."
  ingress     = var.gateway_ingress

  # Terraform only: a plan that would delete or replace the service fails; the console and gcloud still can.
  deletion_protection  = var.deletion_protection
  invoker_iam_disabled = false

  template {
    service_account                  = google_service_account.gateway.email
    timeout                          = "${local.gateway_request_timeout_seconds}s"
    max_instance_request_concurrency = var.gateway.concurrency

    scaling {
      min_instance_count = var.gateway.min_instances
      max_instance_count = var.gateway.max_instances
    }

    containers {
      name  = "gateway"
      image = var.gateway_image

      ports {
        name           = "h2c"
        container_port = local.gateway_port
      }

      resources {
        limits = {
          cpu    = var.gateway.cpu
          memory = var.gateway.memory
        }
        # The gateway answers a stream only after Pub/Sub has acknowledged its messages, so no work is left
        # running between requests and CPU can be throttled when idle.
        cpu_idle          = true
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.gateway_environment
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.gateway_secret_environment
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value.secret
              version = env.value.version
            }
          }
        }
      }

      # Serving starts only once the health service reports SERVING (the topic was found).
      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 2
        timeout_seconds       = 1
        failure_threshold     = 30
        grpc {
          port = local.gateway_port
        }
      }

      # Liveness asks the gateway's "liveness" service, which stays SERVING while Pub/Sub is down:
      # restarting instances would not bring Pub/Sub back. So no probe restarts an instance that lost Pub/Sub.
      liveness_probe {
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
        grpc {
          port    = local.gateway_port
          service = "liveness"
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.gateway_image != null
      error_message = "gateway_image is not set: build the image (scripts/build_gateway_image.sh, docs/deploy.md step 4) and set gateway_image to the digest it prints."
    }
  }

  depends_on = [
    google_pubsub_topic_iam_member.gateway_publishes,
    google_pubsub_topic_iam_member.gateway_reads_topic,
    google_secret_manager_secret_iam_member.gateway_service_tokens,
  ]
}

resource "google_cloud_run_v2_service_iam_member" "exporter_invokes_gateway" {
  project  = var.project_id
  location = google_cloud_run_v2_service.gateway.location
  name     = google_cloud_run_v2_service.gateway.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.function["export"].email}"
}

resource "google_cloud_run_v2_service_iam_member" "extra_gateway_invokers" {
  for_each = toset(var.gateway_extra_invokers)

  project  = var.project_id
  location = google_cloud_run_v2_service.gateway.location
  name     = google_cloud_run_v2_service.gateway.name
  role     = "roles/run.invoker"
  member   = each.value
}
