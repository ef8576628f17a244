# Plan-time warnings: conditions that do not stop an apply but that an operator must see. A failed `check`
# assertion is printed as a warning by `terraform plan` and `terraform apply`. Only variables are read here, so
# tests/terraform/test_terraform_evaluation.py evaluates these blocks with the real Terraform, offline.

check "alerts_reach_someone" {
  assert {
    condition     = length(var.notification_channels) > 0 || var.alert_email != null
    error_message = "No notification channel: set notification_channels or alert_email, or every alert policy (backlog, job errors, gateway errors, dead letters, BigQuery sink) fires without telling anyone."
  }
}
