#!/usr/bin/env bash
# Build the gateway's container image with Cloud Build and push it to Artifact Registry.
#
# Why Cloud Build: no local Docker daemon or registry credentials are needed, and the image is built on the same
# platform (linux/amd64) Cloud Run runs. The build context is the repository root (the Dockerfile installs the
# gateway's dependencies and copies telemetry_events/ and gateway_run/), uploaded without what .dockerignore lists.
#
# Usage:
#   scripts/build_gateway_image.sh REPOSITORY [TAG]
#     REPOSITORY  Artifact Registry Docker repository, e.g. the `images_repository` Terraform output:
#                 europe-west1-docker.pkg.dev/PROJECT/telemetry-images
#     TAG         image tag (default: the git commit, with -dirty when the tree has changes)
#   Environment (both required; Terraform outputs them):
#     BUILD_SERVICE_ACCOUNT  the build's identity, projects/P/serviceAccounts/EMAIL (output build_service_account).
#                            Required: without it Cloud Build runs as the project's default build account (on new
#                            projects the Compute Engine default account, usually with Editor on the project).
#     BUILD_STAGING_DIR      gs://BUCKET/PATH the build context is uploaded to, readable by that account
#                            (output build_staging_dir)
#
# The builder image is pinned by digest (BUILDER below), like the Dockerfile's base image, so the same source
# builds with the same tools. To move it: look up the digest of gcr.io/cloud-builders/docker, put it below.
#
# Prints the digest-pinned image reference on stdout: give it to Terraform as gateway_image, so every build
# rolls out as a new Cloud Run revision.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
fi

repository="${1%/}"
if [[ ! "$repository" =~ ^([a-z0-9-]+)-docker\.pkg\.dev/([a-z][a-z0-9-]{4,28}[a-z0-9])/([a-z0-9_.-]+)$ ]]; then
  echo "build_gateway_image: REPOSITORY must look like REGION-docker.pkg.dev/PROJECT/REPOSITORY, got '$repository'" >&2
  exit 2
fi
region="${BASH_REMATCH[1]}"
project="${BASH_REMATCH[2]}"

BUILDER="gcr.io/cloud-builders/docker@sha256:3d00b6c1a9b862621c30fc74d4f2abfc62bcbdee631ed3febd31e7edbdf6252c"

if [[ ! "${BUILD_SERVICE_ACCOUNT:-}" =~ ^projects/[^/]+/serviceAccounts/[^/@]+@[^/]+$ ]]; then
  echo "build_gateway_image: set BUILD_SERVICE_ACCOUNT=projects/PROJECT/serviceAccounts/EMAIL" \
    "(terraform output -raw build_service_account); got '${BUILD_SERVICE_ACCOUNT:-}'" >&2
  exit 2
fi
if [[ ! "${BUILD_STAGING_DIR:-}" =~ ^gs://[a-z0-9][a-z0-9._-]*(/[^ ]*)?$ ]]; then
  echo "build_gateway_image: set BUILD_STAGING_DIR=gs://BUCKET/PATH (terraform output -raw build_staging_dir);" \
    "got '${BUILD_STAGING_DIR:-}'" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [[ ! -f gateway_run/Dockerfile ]]; then
  echo "build_gateway_image: gateway_run/Dockerfile is missing" >&2
  exit 1
fi

tag="${2:-}"
if [[ -z "$tag" ]]; then
  tag="$(git rev-parse --short=12 HEAD 2>/dev/null || date -u +%Y%m%d%H%M%S)"
  if [[ -n "$(git status --porcelain 2>/dev/null)" ]]; then
    tag="${tag}-dirty"
  fi
fi
image="${repository}/telemetry-gateway:${tag}"

config="$(mktemp)"
trap 'rm -f "$config"' EXIT
cat >"$config" <<YAML
steps:
  - name: ${BUILDER}
    args: ["build", "--file", "gateway_run/Dockerfile", "--tag", "${image}", "."]
images: ["${image}"]
options:
  logging: CLOUD_LOGGING_ONLY
YAML

echo "build_gateway_image: building ${image} in ${project} (${region}) as ${BUILD_SERVICE_ACCOUNT##*/}" >&2
gcloud builds submit . \
  --project="$project" \
  --region="$region" \
  --config="$config" \
  --ignore-file=.dockerignore \
  --service-account="$BUILD_SERVICE_ACCOUNT" \
  --gcs-source-staging-dir="$BUILD_STAGING_DIR" >&2

digest="$(gcloud artifacts docker images describe "$image" --project="$project" --format='value(image_summary.digest)')"
if [[ ! "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
  echo "build_gateway_image: could not read the digest of ${image} (got '${digest}')" >&2
  exit 1
fi
echo "${repository}/telemetry-gateway@${digest}"
