# Cloud SQL for PostgreSQL 15 holding the export queue.
#
# Access model: no passwords. Every connection goes through a Cloud SQL connector (the Python Connector in the
# functions, the Cloud SQL Auth Proxy for migrations), which checks IAM, brings a client certificate and logs in
# with an IAM token. The instance enforces all three: connector_enforcement = REQUIRED, ssl_mode requiring trusted
# client certificates, and the cloudsql.iam_authentication flag. With the default public IP there are no authorized
# networks, so nothing can connect directly from the internet.

locals {
  sql_instance_name = "${local.prefix}-db"
  db_name           = "telemetry"
  db_private        = var.db_private_network != null
}

resource "google_sql_database_instance" "main" {
  name             = local.sql_instance_name
  project          = var.project_id
  region           = var.region
  database_version = "POSTGRES_15"

  # Terraform-level guard; settings.deletion_protection_enabled below guards against deletion outside Terraform.
  deletion_protection = var.deletion_protection

  settings {
    tier                        = var.db_tier
    edition                     = "ENTERPRISE"
    availability_type           = var.db_availability_type
    disk_type                   = "PD_SSD"
    disk_size                   = var.db_disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    connector_enforcement       = "REQUIRED"

    user_labels = merge(var.labels, { app = "telemetry-export" })

    ip_configuration {
      ipv4_enabled    = !local.db_private
      private_network = var.db_private_network
      ssl_mode        = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
      # No authorized_networks block: the public IP, when there is one, admits connectors only.
    }

    # Deleting the instance deletes its automated backups; this keeps one last backup for
    # db_final_backup_retention_days, restorable to a new instance (docs/deploy.md, Tearing down).
    final_backup_config {
      enabled        = true
      retention_days = var.db_final_backup_retention_days
    }

    backup_configuration {
      enabled                        = true
      start_time                     = var.db_backup_start_time
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = 7

      backup_retention_settings {
        retained_backups = var.db_backup_retained_count
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = 7 # Sunday
      hour         = 4
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      record_client_address   = false
      record_application_tags = false
    }

    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }

    # Connection, lock and DDL logging make a stuck exporter, a lock pile-up or a schema change visible in Cloud
    # Logging. None of these log statement parameters, so event payloads stay out of the logs.
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_duration"
      value = "on"
    }
    database_flags {
      # Only DDL: DML statements are about queue rows, whose text is not worth the volume.
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      # -1 disables slow-statement logging with parameter values: those carry event payloads.
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
  }

  lifecycle {
    precondition {
      condition     = !local.db_private || var.db_function_subnetwork != null
      error_message = "A private-IP instance needs db_function_subnetwork for the functions' Direct VPC egress."
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_sql_database" "telemetry" {
  project  = var.project_id
  instance = google_sql_database_instance.main.name
  name     = local.db_name
}

# IAM database users. A service account's database user name is its email without ".gserviceaccount.com".
#
# deletion_policy = "ABANDON" on every user: Cloud SQL deletes a user with DROP ROLE, which PostgreSQL refuses
# while the role owns objects (the admin who migrated owns the tables) or holds grants. Abandoning removes the user
# from Terraform's state only; the role stays in the database until someone reassigns what it owns and drops it
# (docs/deploy.md, Tearing down), and deleting the instance removes it anyway.
resource "google_sql_user" "function" {
  for_each = google_service_account.function

  project         = var.project_id
  instance        = google_sql_database_instance.main.name
  name            = trimsuffix(each.value.email, ".gserviceaccount.com")
  type            = "CLOUD_IAM_SERVICE_ACCOUNT"
  database_roles  = var.db_function_roles[each.key]
  deletion_policy = "ABANDON"
}

# People who run `telemetry-export db migrate` (through the Auth Proxy, with --auto-iam-authn). The migration
# creates the tables, so these users own them; the functions reach them through pg_read/write_all_data.
resource "google_sql_user" "admin" {
  for_each = toset(var.db_admin_iam_users)

  project         = var.project_id
  instance        = google_sql_database_instance.main.name
  name            = each.value
  type            = "CLOUD_IAM_USER"
  database_roles  = ["cloudsqlsuperuser"]
  deletion_policy = "ABANDON"
}
