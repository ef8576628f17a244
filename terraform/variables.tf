# Inputs of the telemetry-export deployment. Every variable says what it controls and refuses values that would
# only fail later, on apply or at run time. terraform.tfvars.example shows a complete, minimal set.

# --- Where ------------------------------------------------------------------------------------------------------

variable "project_id" {
  description = "Google Cloud project that holds everything (one telemetry-export deployment per project: the custom metric types are project-wide)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 characters: lowercase letters, digits, hyphens), not a project name or number."
  }
}

variable "region" {
  description = "Region for Cloud SQL, the functions, Cloud Run, Scheduler, Artifact Registry and the source bucket."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a Google Cloud region such as europe-west1 or us-central1."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (service accounts, functions, topics, ...), so resources are recognisable and two stacks can share a project for everything but the custom metrics."
  type        = string
  default     = "telemetry"

  validation {
    # Service account IDs are at most 30 characters and the longest suffix used is "-scheduler" (10).
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-20 characters: lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "labels" {
  description = "Labels added to every resource that supports them (the provider's default_labels)."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = <<-EOT
    What it protects, exactly:
    - Cloud SQL instance: refused by Terraform (deletion_protection) AND by the Cloud SQL API itself
      (settings.deletion_protection_enabled), so the console, gcloud and the API cannot delete it either.
    - BigQuery events table and the Cloud Run gateway: refused by Terraform only (a plan that would destroy or
      replace them fails). The console, bq/gcloud and the API can still delete them.
    - Function source bucket: Terraform will not delete it while it holds objects (force_destroy is its negation).
    Turn off only to tear a stack down (docs/deploy.md, Tearing down).
  EOT
  type        = bool
  default     = true
}

# --- Code artefacts ---------------------------------------------------------------------------------------------

variable "function_source_zip" {
  description = "Path to the functions' source zip built by scripts/package_functions.py. Null means build/functions-source.zip at the repository root. The bucket object is named after the file's SHA-256, so a changed zip redeploys the functions and an unchanged one does not."
  type        = string
  default     = null
}

variable "functions_runtime" {
  description = "Cloud Functions (gen2) Python runtime. requirements/functions.txt, the functions' locked dependencies, is resolved for this Python; another runtime needs a new lock (scripts/lock_requirements.py) first."
  type        = string
  default     = "python312"

  validation {
    condition     = contains(["python312"], var.functions_runtime)
    error_message = "functions_runtime must be python312: requirements/functions.txt is locked for Python 3.12 (relock with scripts/lock_requirements.py to move)."
  }
}

variable "gateway_image" {
  description = "Container image of the gateway by digest, as printed by scripts/build_gateway_image.sh (REPOSITORY/telemetry-gateway@sha256:...). A digest names exactly one image: a tag can move, so it is refused. Null is allowed only for the bootstrap apply (docs/deploy.md step 3): the gateway itself refuses to plan without an image."
  type        = string
  default     = null

  validation {
    condition     = var.gateway_image == null || can(regex("^[a-z0-9.-]+(:[0-9]+)?/[^ @]+@sha256:[0-9a-f]{64}$", var.gateway_image))
    error_message = "gateway_image must be pinned by digest, e.g. europe-west1-docker.pkg.dev/PROJECT/REPO/telemetry-gateway@sha256:<64 hex> (scripts/build_gateway_image.sh prints it); tags are refused."
  }
}

# --- Database ---------------------------------------------------------------------------------------------------

variable "db_tier" {
  description = "Cloud SQL machine tier (Enterprise edition). db-custom-1-3840 is the smallest dedicated-core tier; shared-core tiers (db-f1-micro, db-g1-small) have no SLA."
  type        = string
  default     = "db-custom-1-3840"

  validation {
    condition     = can(regex("^db-(custom-[0-9]+-[0-9]+|f1-micro|g1-small|perf-optimized-N-[0-9]+)$", var.db_tier))
    error_message = "db_tier must be a Cloud SQL for PostgreSQL tier such as db-custom-1-3840 or db-g1-small."
  }
}

variable "db_availability_type" {
  description = "ZONAL (one zone) or REGIONAL (high availability with a standby in a second zone; about twice the cost)."
  type        = string
  default     = "ZONAL"

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.db_availability_type)
    error_message = "db_availability_type must be ZONAL or REGIONAL."
  }
}

variable "db_disk_size_gb" {
  description = "Initial data disk size in GB; the disk grows automatically."
  type        = number
  default     = 10

  validation {
    condition     = var.db_disk_size_gb >= 10 && floor(var.db_disk_size_gb) == var.db_disk_size_gb
    error_message = "db_disk_size_gb must be a whole number of at least 10."
  }
}

variable "db_backup_start_time" {
  description = "Start of the daily backup window, HH:MM in UTC."
  type        = string
  default     = "03:00"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", var.db_backup_start_time))
    error_message = "db_backup_start_time must be HH:MM (24-hour clock, UTC)."
  }
}

variable "db_final_backup_retention_days" {
  description = "Days the final backup, taken when the Cloud SQL instance is deleted, is kept (Cloud SQL's final_backup_config). Deleting the instance otherwise deletes every automated backup with it."
  type        = number
  default     = 30

  validation {
    condition     = var.db_final_backup_retention_days >= 1 && var.db_final_backup_retention_days <= 365 && floor(var.db_final_backup_retention_days) == var.db_final_backup_retention_days
    error_message = "db_final_backup_retention_days must be a whole number of days, 1-365."
  }
}

variable "db_backup_retained_count" {
  description = "Number of daily backups kept."
  type        = number
  default     = 14

  validation {
    condition     = var.db_backup_retained_count >= 1 && var.db_backup_retained_count <= 365
    error_message = "db_backup_retained_count must be between 1 and 365."
  }
}

variable "db_private_network" {
  description = "Null (default): the instance has a public IP with no authorized networks, reachable only through the Cloud SQL connectors (IAM-checked, mutual TLS). Set to a VPC network ID that already has private services access to give the instance a private IP only; the functions then reach it through Direct VPC egress on db_function_subnetwork."
  type        = string
  default     = null
}

variable "db_function_subnetwork" {
  description = "Subnetwork (ID or name) used for the functions' Direct VPC egress when db_private_network is set; ignored otherwise."
  type        = string
  default     = null

  validation {
    condition     = var.db_private_network == null || var.db_function_subnetwork != null
    error_message = "db_function_subnetwork is required when db_private_network is set: the functions need a subnetwork to reach a private-IP instance."
  }
}

variable "db_admin_iam_users" {
  description = "Google accounts (emails) that get a Cloud SQL IAM database user with the cloudsqlsuperuser role, for running `telemetry-export db migrate` through the Cloud SQL Auth Proxy. They also get Cloud SQL client and instance-user roles on this instance only. The one who migrates owns the tables: removing a name abandons its database user (deletion_policy = ABANDON) instead of failing on DROP ROLE; docs/deploy.md says how to hand the tables over."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for email in var.db_admin_iam_users : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", email)) && !endswith(email, ".gserviceaccount.com")])
    error_message = "db_admin_iam_users must be user emails (service accounts are created by this configuration, not listed here)."
  }
}

variable "db_function_roles" {
  description = "PostgreSQL roles granted to each function's IAM database user. The predefined pg_read_all_data / pg_write_all_data roles give table access without per-table GRANTs after each migration; the metrics function only reads."
  type = object({
    export  = list(string)
    cleanup = list(string)
    metrics = list(string)
  })
  default = {
    export  = ["pg_read_all_data", "pg_write_all_data"]
    cleanup = ["pg_read_all_data", "pg_write_all_data"]
    metrics = ["pg_read_all_data"]
  }

  validation {
    condition     = !contains(flatten([var.db_function_roles.export, var.db_function_roles.cleanup, var.db_function_roles.metrics]), "cloudsqlsuperuser")
    error_message = "The functions must not get cloudsqlsuperuser: least privilege."
  }
}

# --- Functions --------------------------------------------------------------------------------------------------

variable "export_function" {
  description = "The export_events function and its schedule. timeout_seconds is also passed as TELEMETRY_EXPORT_FUNCTION_TIMEOUT so a run stops claiming before the platform kills it (the exporter's stream deadline is derived from it); the Scheduler attempt deadline is 60 s longer, and so, by default, is the gateway's request timeout. lease_seconds (null: timeout + 60) must exceed the timeout so a running export never has its rows claimed by another run. A schedule of the form */N * * * * (N dividing 60) is shifted by a minute offset derived from instance_id (docs/capacity.md, Schedule spread), so a fleet does not reach the gateway in the same minute; any other form is used as written."
  type = object({
    schedule        = optional(string, "*/5 * * * *")
    timeout_seconds = optional(number, 240)
    memory          = optional(string, "512Mi")
    cpu             = optional(string, "1")
    max_instances   = optional(number, 2)
    retry_count     = optional(number, 1)
    lease_seconds   = optional(number)
  })
  default = {}

  validation {
    condition     = var.export_function.timeout_seconds >= 60 && var.export_function.timeout_seconds <= 1740
    error_message = "export_function.timeout_seconds must be 60-1740: Cloud Scheduler's attempt deadline is at most 1800 s and must be above the function timeout."
  }
  validation {
    condition     = var.export_function.lease_seconds == null || try(var.export_function.lease_seconds > var.export_function.timeout_seconds, false)
    error_message = "export_function.lease_seconds must be greater than export_function.timeout_seconds."
  }
  validation {
    condition     = length(split(" ", trimspace(var.export_function.schedule))) == 5
    error_message = "export_function.schedule must be a 5-field cron expression."
  }
  validation {
    condition     = var.export_function.retry_count >= 0 && var.export_function.retry_count <= 5
    error_message = "export_function.retry_count must be 0-5 (bounded retries; the next scheduled run catches up anyway)."
  }
  validation {
    condition     = var.export_function.max_instances >= 1 && var.export_function.max_instances <= 10
    error_message = "export_function.max_instances must be 1-10."
  }
  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi|M|G)$", var.export_function.memory))
    error_message = "export_function.memory must look like 256Mi, 512Mi or 1Gi."
  }
}

variable "cleanup_function" {
  description = "The cleanup_exported_events function and its schedule."
  type = object({
    schedule        = optional(string, "*/30 * * * *")
    timeout_seconds = optional(number, 120)
    memory          = optional(string, "256Mi")
    cpu             = optional(string, "0.167")
    max_instances   = optional(number, 1)
    retry_count     = optional(number, 1)
  })
  default = {}

  validation {
    condition     = var.cleanup_function.timeout_seconds >= 60 && var.cleanup_function.timeout_seconds <= 1740
    error_message = "cleanup_function.timeout_seconds must be 60-1740 (Cloud Scheduler's attempt deadline is at most 1800 s)."
  }
  validation {
    condition     = length(split(" ", trimspace(var.cleanup_function.schedule))) == 5
    error_message = "cleanup_function.schedule must be a 5-field cron expression."
  }
  validation {
    condition     = var.cleanup_function.retry_count >= 0 && var.cleanup_function.retry_count <= 5
    error_message = "cleanup_function.retry_count must be 0-5."
  }
  validation {
    condition     = var.cleanup_function.max_instances >= 1 && var.cleanup_function.max_instances <= 10
    error_message = "cleanup_function.max_instances must be 1-10."
  }
  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi|M|G)$", var.cleanup_function.memory))
    error_message = "cleanup_function.memory must look like 256Mi, 512Mi or 1Gi."
  }
}

variable "metrics_function" {
  description = "The report_queue_metrics function and its schedule."
  type = object({
    schedule        = optional(string, "*/5 * * * *")
    timeout_seconds = optional(number, 60)
    memory          = optional(string, "256Mi")
    cpu             = optional(string, "0.167")
    max_instances   = optional(number, 1)
    retry_count     = optional(number, 0)
  })
  default = {}

  validation {
    condition     = var.metrics_function.timeout_seconds >= 60 && var.metrics_function.timeout_seconds <= 1740
    error_message = "metrics_function.timeout_seconds must be 60-1740 (Cloud Scheduler's attempt deadline is at most 1800 s)."
  }
  validation {
    condition     = length(split(" ", trimspace(var.metrics_function.schedule))) == 5
    error_message = "metrics_function.schedule must be a 5-field cron expression."
  }
  validation {
    condition     = var.metrics_function.retry_count >= 0 && var.metrics_function.retry_count <= 5
    error_message = "metrics_function.retry_count must be 0-5."
  }
  validation {
    condition     = var.metrics_function.max_instances >= 1 && var.metrics_function.max_instances <= 10
    error_message = "metrics_function.max_instances must be 1-10."
  }
  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi|M|G)$", var.metrics_function.memory))
    error_message = "metrics_function.memory must look like 256Mi, 512Mi or 1Gi."
  }
}

variable "function_ingress" {
  description = <<-EOT
    Network ingress of the three functions (they are Cloud Run services). Default ALLOW_INTERNAL_ONLY: Google's
    Cloud Run ingress page (https://cloud.google.com/run/docs/securing/ingress, "Internal") lists Cloud Scheduler
    among the Google Cloud products whose requests count as internal when they are in the same project or VPC
    Service Controls perimeter as the service, and this stack's Scheduler jobs are in the functions' project. The
    same page says requests from other Cloud Run services or functions are internal only when routed through a
    VPC, and requests from the internet never are: calling a function by hand then needs `gcloud scheduler jobs run`
    (docs/deploy.md) or ALLOW_ALL. Invocation also always needs an OIDC token of the scheduler service account.
  EOT
  type        = string
  default     = "ALLOW_INTERNAL_ONLY"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.function_ingress)
    error_message = "function_ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "schedule_time_zone" {
  description = "Time zone of the Scheduler cron expressions."
  type        = string
  default     = "Etc/UTC"
}

variable "schedules_paused" {
  description = "Create the Scheduler jobs paused (for example until the database is migrated)."
  type        = bool
  default     = false
}

variable "log_level" {
  description = "LOG_LEVEL of the functions and the gateway."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

# --- What is exported, and as whom ------------------------------------------------------------------------------

variable "instance_id" {
  description = "TELEMETRY_INSTANCE_ID: stable identifier of the instance whose events are exported (sent in every stream's metadata)."
  type        = string

  validation {
    condition     = length(trimspace(var.instance_id)) > 0
    error_message = "instance_id must not be empty: the gateway rejects unlicensed identifiers without one."
  }
}

variable "external_url" {
  description = "TELEMETRY_EXTERNAL_URL: the instance's external URL, sent in the stream metadata."
  type        = string
  default     = ""

  validation {
    condition     = var.external_url == "" || can(regex("^https?://", var.external_url))
    error_message = "external_url must be empty or an http(s) URL."
  }
}

variable "license_key_secret" {
  description = "Secret Manager secret ID (in this project) holding the license key, passed to the exporter as TELEMETRY_LICENSE_KEY. Create it before applying (docs/deploy.md); null exports as an unlicensed instance. The key never enters Terraform state."
  type        = string
  default     = null
}

variable "license_key_secret_version" {
  description = "Version number of license_key_secret given to the exporter. Pinned, as Google recommends for secrets in environment variables: \"latest\" would change under running instances at their next cold start, unseen by Terraform. Rotate by adding a version and setting its number here (docs/deploy.md, License keys)."
  type        = string
  default     = null

  validation {
    condition     = var.license_key_secret_version == null || can(regex("^[1-9][0-9]*$", var.license_key_secret_version))
    error_message = "license_key_secret_version must be a version number such as 3 (\"latest\" is refused: pin the version)."
  }
  validation {
    condition     = (var.license_key_secret == null) == (var.license_key_secret_version == null)
    error_message = "license_key_secret and license_key_secret_version go together: set both (a licensed instance) or neither."
  }
}

variable "export_mode" {
  description = "TELEMETRY_EXPORT_MODE: all, listed (only export_features) or disabled."
  type        = string
  default     = "all"

  validation {
    condition     = contains(["all", "listed", "disabled"], var.export_mode)
    error_message = "export_mode must be all, listed or disabled."
  }
}

variable "export_features" {
  description = "TELEMETRY_EXPORT_FEATURES: features exported when export_mode is listed."
  type        = list(string)
  default     = []

  validation {
    condition     = var.export_mode != "listed" || length(var.export_features) > 0
    error_message = "export_features must name at least one feature when export_mode is listed."
  }
}

variable "allowlist" {
  description = "TELEMETRY_ALLOWLIST entries (feature::action::key1::key2; action may be *), given to the exporter and the gateway alike so both edges redact the same way."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for entry in var.allowlist : can(regex("^[a-z][a-zA-Z.-]+::([a-z][a-zA-Z.-]+|\\*)(::[^:,]+)+$", entry))])
    error_message = "Each allowlist entry must be feature::action::key[::key...] (action may be *), with no commas."
  }
}

variable "export_batch_size" {
  description = "TELEMETRY_EXPORT_BATCH_SIZE: rows claimed per batch."
  type        = number
  default     = 10000

  validation {
    condition     = var.export_batch_size >= 100 && var.export_batch_size <= 100000
    error_message = "export_batch_size must be between 100 and 100000."
  }
}

variable "export_max_attempts" {
  description = "TELEMETRY_EXPORT_MAX_ATTEMPTS: sends of one row before it is quarantined."
  type        = number
  default     = 10

  validation {
    condition     = var.export_max_attempts >= 1
    error_message = "export_max_attempts must be at least 1."
  }
}

variable "export_deadline_margin_seconds" {
  description = "TELEMETRY_EXPORT_DEADLINE_MARGIN: how long before the function timeout the exporter stops claiming new batches."
  type        = number
  default     = 30

  validation {
    condition     = var.export_deadline_margin_seconds >= 5 && var.export_deadline_margin_seconds < var.export_function.timeout_seconds
    error_message = "export_deadline_margin_seconds must be at least 5 and shorter than export_function.timeout_seconds."
  }
}

variable "cleanup_retention" {
  description = "TELEMETRY_CLEANUP_RETENTION: how long exported rows stay (so admins can see what left), as a duration like 24h."
  type        = string
  default     = "24h"

  validation {
    condition     = can(regex("^[0-9]+(s|m|h|d)$", var.cleanup_retention))
    error_message = "cleanup_retention must be a duration such as 90m, 24h or 7d."
  }
}

variable "cleanup_quarantine_retention" {
  description = "TELEMETRY_CLEANUP_QUARANTINE_RETENTION: how long quarantined rows stay for inspection."
  type        = string
  default     = "30d"

  validation {
    condition     = can(regex("^[0-9]+(s|m|h|d)$", var.cleanup_quarantine_retention))
    error_message = "cleanup_quarantine_retention must be a duration such as 72h or 30d."
  }
}

variable "metrics_task_id" {
  description = "TELEMETRY_METRICS_TASK_ID: the generic_task task_id the gauges are written under. Null means the instance_id."
  type        = string
  default     = null
}

# --- Gateway ----------------------------------------------------------------------------------------------------

variable "gateway" {
  description = "Cloud Run sizing of the gateway: scaling, per-instance concurrency, CPU and memory, and the request timeout. A RecordEvents stream must finish within the request timeout, and this stack's exporter keeps its stream open for up to export_function.timeout_seconds, so request_timeout_seconds (null: that timeout + 60 s) may not be shorter. If other instances of the fleet export to this gateway with longer function timeouts, raise it to cover theirs too."
  type = object({
    min_instances           = optional(number, 0)
    max_instances           = optional(number, 5)
    concurrency             = optional(number, 40)
    cpu                     = optional(string, "1")
    memory                  = optional(string, "512Mi")
    request_timeout_seconds = optional(number)
  })
  default = {}

  validation {
    condition     = var.gateway.min_instances >= 0 && var.gateway.max_instances >= 1 && var.gateway.min_instances <= var.gateway.max_instances
    error_message = "gateway needs 0 <= min_instances <= max_instances and max_instances >= 1."
  }
  validation {
    condition     = var.gateway.concurrency >= 1 && var.gateway.concurrency <= 1000
    error_message = "gateway.concurrency must be 1-1000."
  }
  validation {
    condition     = var.gateway.request_timeout_seconds == null || try(var.gateway.request_timeout_seconds >= 30 && var.gateway.request_timeout_seconds <= 3600, false)
    error_message = "gateway.request_timeout_seconds must be 30-3600 (Cloud Run's limit)."
  }
  validation {
    condition     = var.gateway.request_timeout_seconds == null || try(var.gateway.request_timeout_seconds >= var.export_function.timeout_seconds, false)
    error_message = "gateway.request_timeout_seconds must be at least export_function.timeout_seconds: the exporter's stream lasts up to the function timeout, and Cloud Run would cut it at the request timeout. Leave it null to derive it (function timeout + 60 s)."
  }
}

variable "gateway_ingress" {
  description = <<-EOT
    Network ingress of the gateway: INGRESS_TRAFFIC_ALL, the only value this configuration supports. The exporter
    (a function without VPC egress for public traffic) calls the gateway's run.app URL, and the Cloud Run ingress
    page (https://cloud.google.com/run/docs/securing/ingress) counts requests from functions as internal only when
    they are routed through a VPC network; instances elsewhere in the fleet reach it from the internet. So
    INGRESS_TRAFFIC_INTERNAL_ONLY would cut every exporter off, and INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER would need
    a load balancer this configuration does not create. Access is still limited: only IAM principals with
    run.invoker (the exporter and gateway_extra_invokers) get past Cloud Run, with an ID token.
  EOT
  type        = string
  default     = "INGRESS_TRAFFIC_ALL"

  validation {
    condition     = var.gateway_ingress == "INGRESS_TRAFFIC_ALL"
    error_message = "gateway_ingress must be INGRESS_TRAFFIC_ALL: with INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER the exporter (no VPC egress to the gateway) and the rest of the fleet could not reach the run.app URL. See the variable's description."
  }
}

variable "gateway_extra_invokers" {
  description = "Further IAM members allowed to call the gateway (e.g. serviceAccount:managed-svc@other.iam.gserviceaccount.com). The exporter is always allowed. Public members are refused."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.gateway_extra_invokers : can(regex("^(serviceAccount|user|group|domain):", m)) && !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "gateway_extra_invokers must be serviceAccount:, user:, group: or domain: members; allUsers and allAuthenticatedUsers are not allowed."
  }
}

variable "gateway_license_public_keys" {
  description = "TELEMETRY_GATEWAY_LICENSE_PUBLIC_KEY: base64 Ed25519 public keys that verify license keys (public, so not secrets). Two keys let a key rotate without a gap. Empty: licensed identifiers are refused."
  type        = list(string)
  default     = []

  validation {
    # A raw Ed25519 public key is 32 bytes: 43 base64 characters plus optional padding (standard or URL-safe).
    condition     = alltrue([for key in var.gateway_license_public_keys : can(regex("^[A-Za-z0-9+/_-]{43}=?$", key))])
    error_message = "Each gateway_license_public_keys entry must be a base64-encoded 32-byte Ed25519 public key."
  }
}

variable "gateway_allow_unlicensed" {
  description = "TELEMETRY_GATEWAY_ALLOW_UNLICENSED: accept events from unlicensed instances (identified by instance_id only). Default false, the gateway's own default: a gateway on the internet accepts only license keys it can verify (gateway_license_public_keys) and managed-service tokens unless you choose otherwise. Set true only when unlicensed instances are meant to report, e.g. this stack's own exporter without license_key_secret."
  type        = bool
  default     = false
}

variable "gateway_service_token_secret" {
  description = "Secret Manager secret ID holding TELEMETRY_GATEWAY_SERVICE_TOKEN_SHA256 (comma-separated SERVICE_ID=SHA256 entries: the hex SHA-256 of each managed-service bearer token, bound to the service ID it may send as). Null: managed services are refused."
  type        = string
  default     = null
}

variable "gateway_service_token_secret_version" {
  description = "Version number of gateway_service_token_secret given to the gateway: pinned, never \"latest\" (rotation: docs/deploy.md)."
  type        = string
  default     = null

  validation {
    condition     = var.gateway_service_token_secret_version == null || can(regex("^[1-9][0-9]*$", var.gateway_service_token_secret_version))
    error_message = "gateway_service_token_secret_version must be a version number such as 2 (\"latest\" is refused: pin the version)."
  }
  validation {
    condition     = (var.gateway_service_token_secret == null) == (var.gateway_service_token_secret_version == null)
    error_message = "gateway_service_token_secret and gateway_service_token_secret_version go together: set both or neither."
  }
}

variable "gateway_max_receive_bytes" {
  description = "TELEMETRY_GATEWAY_MAX_RECEIVE_BYTES: largest gRPC message the gateway accepts (the exporter sends messages under 1 MiB)."
  type        = number
  default     = 12582912

  validation {
    condition     = var.gateway_max_receive_bytes >= 65536 && var.gateway_max_receive_bytes <= 67108864
    error_message = "gateway_max_receive_bytes must be between 64 KiB and 64 MiB (the gateway's own limits)."
  }
}

# --- Pub/Sub and BigQuery ---------------------------------------------------------------------------------------

variable "topic_message_retention" {
  description = "How long the events topic keeps messages for replay (seek), e.g. 604800s. Empty disables topic retention."
  type        = string
  default     = "604800s"

  validation {
    condition     = var.topic_message_retention == "" || can(regex("^[0-9]+s$", var.topic_message_retention))
    error_message = "topic_message_retention must be empty or a number of seconds such as 604800s."
  }
}

variable "bigquery_location" {
  description = "BigQuery dataset location (EU, US or a region). Null means the region."
  type        = string
  default     = null
}

variable "bigquery_partition_expiration_days" {
  description = "Days a daily partition of the events table is kept; 0 keeps them forever."
  type        = number
  default     = 400

  validation {
    condition     = var.bigquery_partition_expiration_days >= 0
    error_message = "bigquery_partition_expiration_days must be 0 or more."
  }
}

variable "bigquery_readers" {
  description = "IAM members that may read the events dataset (user:, group:, serviceAccount: or domain:). The dataset's access list is set by Terraform: besides these, only project owners (OWNER) and the sink's own writer account (on the table) have access; project viewers and editors no longer read it through the dataset's default access. Roles granted at project level (roles/bigquery.dataViewer on the project, say) still apply: grant BigQuery roles per dataset."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.bigquery_readers : can(regex("^(user|group|serviceAccount|domain):[^:@\\s]+(@[^@\\s]+)?$", m)) && !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "bigquery_readers must be user:EMAIL, group:EMAIL, serviceAccount:EMAIL or domain:DOMAIN members (never allUsers or allAuthenticatedUsers)."
  }
}

variable "bigquery_max_delivery_attempts" {
  description = "Deliveries to BigQuery tried per message before the subscription dead-letters it."
  type        = number
  default     = 10

  validation {
    condition     = var.bigquery_max_delivery_attempts >= 5 && var.bigquery_max_delivery_attempts <= 100
    error_message = "bigquery_max_delivery_attempts must be 5-100 (Pub/Sub's limits)."
  }
}

# --- Alerting ---------------------------------------------------------------------------------------------------

variable "notification_channels" {
  description = "Existing Cloud Monitoring notification channel IDs (projects/P/notificationChannels/N) the alert policies notify. With neither these nor alert_email, every alert fires into the void: plan warns (checks.tf)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", c))])
    error_message = "notification_channels must be full IDs: projects/PROJECT/notificationChannels/NUMBER."
  }
}

variable "alert_email" {
  description = "If set, an email notification channel is created for this address and added to every alert policy."
  type        = string
  default     = null

  validation {
    condition     = var.alert_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alert_email))
    error_message = "alert_email must be an email address."
  }
}

variable "alert_backlog_growth_window_seconds" {
  description = "The backlog alert fires when the queue has grown over this window, at every evaluation for as long again (the reference system warned after 1 h)."
  type        = number
  default     = 3600

  validation {
    condition     = var.alert_backlog_growth_window_seconds >= 900 && var.alert_backlog_growth_window_seconds <= 86400
    error_message = "alert_backlog_growth_window_seconds must be 900-86400."
  }
}

variable "alert_oldest_event_age_seconds" {
  description = "Alert when the oldest unexported event is older than this (with 5-minute exports, anything over an hour means exports are failing)."
  type        = number
  default     = 7200

  validation {
    condition     = var.alert_oldest_event_age_seconds >= 600
    error_message = "alert_oldest_event_age_seconds must be at least 600."
  }
}

variable "alert_metrics_absent_seconds" {
  description = "Alert when no backlog gauge has been written for this long (the metrics job or its schedule is broken)."
  type        = number
  default     = 1800

  validation {
    condition     = var.alert_metrics_absent_seconds >= 600 && var.alert_metrics_absent_seconds <= 84600
    error_message = "alert_metrics_absent_seconds must be 600-84600 (Cloud Monitoring's absence window limit is 23.5 h)."
  }
}

variable "alert_job_error_lines" {
  description = "The job-errors alert fires when one function logs at least this many ERROR lines within alert_job_error_window_seconds. A failed run logs one ERROR line (two when the exporter also gave up on a stuck stream); one failure is usually a passing outage that the next run repairs, and nothing is lost meanwhile (rows stay queued). Several mean a fault: with the default 5-minute export schedule, 3 in 30 minutes means at least two of six runs failed."
  type        = number
  default     = 3

  validation {
    condition     = var.alert_job_error_lines >= 1 && floor(var.alert_job_error_lines) == var.alert_job_error_lines
    error_message = "alert_job_error_lines must be a whole number of at least 1."
  }
}

variable "alert_job_error_window_seconds" {
  description = "Window over which alert_job_error_lines is counted."
  type        = number
  default     = 1800

  validation {
    condition     = var.alert_job_error_window_seconds >= 300 && var.alert_job_error_window_seconds <= 86400
    error_message = "alert_job_error_window_seconds must be 300-86400."
  }
}

variable "alert_bigquery_backlog_messages" {
  description = "Alert when the BigQuery subscription holds more undelivered messages than this for 15 minutes: the sink is not keeping up or is failing (schema, permissions, quota)."
  type        = number
  default     = 10000

  validation {
    condition     = var.alert_bigquery_backlog_messages >= 1
    error_message = "alert_bigquery_backlog_messages must be at least 1."
  }
}

variable "alert_bigquery_oldest_unacked_seconds" {
  description = "Alert when the BigQuery subscription's oldest unacknowledged message is older than this. Pub/Sub drops unacknowledged messages after the subscription's retention (7 days), so a broken sink loses events silently unless this fires well before: the default leaves 6 days to react."
  type        = number
  default     = 86400

  validation {
    condition     = var.alert_bigquery_oldest_unacked_seconds >= 600 && var.alert_bigquery_oldest_unacked_seconds <= 518400
    error_message = "alert_bigquery_oldest_unacked_seconds must be 600-518400 (at most 6 days, so the alert comes before the 7-day retention drops messages)."
  }
}

variable "alert_gateway_errors_per_5m" {
  description = "Alert when the gateway logs more than this many ERROR lines in 5 minutes."
  type        = number
  default     = 5

  validation {
    condition     = var.alert_gateway_errors_per_5m >= 0
    error_message = "alert_gateway_errors_per_5m must be 0 or more."
  }
}
