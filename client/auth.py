"""Call credentials for a private service: a bearer token, or a Google ID token kept fresh by google-auth."""

import warnings

import grpc
from google.auth import exceptions as auth_exceptions
from google.auth.transport import requests as auth_requests
from google.oauth2 import id_token

with warnings.catch_warnings():
    # google-auth warns at import that grpcio < 1.83 lacks post-quantum TLS; the 1.81 line is pinned on
    # purpose (see requirements-server.txt), and the warning would only clutter every invocation.
    warnings.simplefilter("ignore", FutureWarning)
    from google.auth.transport.grpc import AuthMetadataPlugin


class AuthError(Exception):
    """Credentials that cannot be obtained; the message is meant for the user."""


def bearer_token_credentials(token: str) -> grpc.CallCredentials:
    """Send `authorization: Bearer TOKEN` with every call."""
    return grpc.access_token_call_credentials(token)


def id_token_credentials(audience: str) -> grpc.CallCredentials:
    """Send a Google ID token for `audience` from application default credentials, refreshed as it expires.

    Works with a service account key (GOOGLE_APPLICATION_CREDENTIALS), impersonation set up by
    `gcloud auth application-default login --impersonate-service-account SA`, and the metadata server on
    Google Cloud. A plain user login cannot mint ID tokens for another audience: such users pass
    `--token "$(gcloud auth print-identity-token)"` instead.
    """
    request = auth_requests.Request()
    try:
        credentials = id_token.fetch_id_token_credentials(audience, request=request)  # type: ignore[no-untyped-call]
        # Fetch the first token now so that a credentials problem is reported as such, not as a failed call;
        # the plugin below refreshes it (google-auth's before_request) whenever it is about to expire.
        credentials.refresh(request)
    except auth_exceptions.DefaultCredentialsError as error:
        raise AuthError(
            f"--id-token found no credentials that can mint ID tokens ({error}). Use a service account: "
            "`gcloud auth application-default login --impersonate-service-account SA_EMAIL`, or "
            'pass --token "$(gcloud auth print-identity-token)"'
        ) from error
    except auth_exceptions.GoogleAuthError as error:
        raise AuthError(f"--id-token could not get an ID token for {audience}: {error}") from error
    plugin = AuthMetadataPlugin(credentials, request)  # type: ignore[no-untyped-call]
    return grpc.metadata_call_credentials(plugin, name="google-id-token")
