terraform {
  # Optional attributes with defaults in object variables need 1.3; cross-variable validation needs 1.9.
  required_version = ">= 1.9.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 8.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = merge(var.labels, {
    app = "telemetry-export"
  })
}
