#!/usr/bin/env bash
# Points the job's next steps at Pulumi's state, as the repository variable PULUMI_BACKEND says (docs/ci-cd.md):
#   oidc   (default) Pulumi Cloud with a short-lived team token from pulumi/auth-actions, the step after this
#          one (Enterprise and Business Critical plans); nothing to do here.
#   token  Pulumi Cloud with the repository secret PULUMI_ACCESS_TOKEN (Individual and Team plans).
#   gcs    the stack's own bucket (config ciStateBackend), reached as the Google account the job authenticated
#          as; BACKEND_URL is its gs:// URL (repository variable PULUMI_BACKEND_URL_DEV or _PROD).
# Reads MODE, TOKEN, BACKEND_URL; appends to $GITHUB_ENV. Fails with one line naming what to set.
set -euo pipefail
mode="${MODE:-oidc}"
case "$mode" in
  oidc) ;;
  token)
    if [ -z "${TOKEN:-}" ]; then
      echo "::error::PULUMI_BACKEND is token but the secret PULUMI_ACCESS_TOKEN is empty: gh secret set PULUMI_ACCESS_TOKEN"
      exit 1
    fi
    echo "PULUMI_ACCESS_TOKEN=$TOKEN" >> "$GITHUB_ENV"
    ;;
  gcs)
    if [[ "${BACKEND_URL:-}" != gs://?* ]]; then
      echo "::error::PULUMI_BACKEND is gcs but the stack's PULUMI_BACKEND_URL_* variable is '${BACKEND_URL:-}': set it to the stack's stateBackendUrl output (gs://...)"
      exit 1
    fi
    echo "PULUMI_BACKEND_URL=$BACKEND_URL" >> "$GITHUB_ENV"
    ;;
  *)
    echo "::error::PULUMI_BACKEND is '$mode': set it to oidc, token or gcs (or leave it unset for oidc)"
    exit 1
    ;;
esac
echo "Pulumi state: $mode"
