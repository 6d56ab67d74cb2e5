"""A stand-in for google-auth's ID token fetch: stub credentials, no network."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from google.auth import credentials as auth_credentials

LONG = datetime.timedelta(hours=1)
# google-auth refreshes a token 3 min 45 s before it expires: one living 10 s is refreshed before each call.
SHORT = datetime.timedelta(seconds=10)


class StubIdTokenCredentials(auth_credentials.Credentials):
    """Hands out "id-N" tokens, N counting refreshes, each valid for `lifetime`."""

    def __init__(self, lifetime: datetime.timedelta) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.lifetime = lifetime
        self.refreshes = 0

    def refresh(self, request: Any) -> None:
        self.refreshes += 1
        self.token = f"id-{self.refreshes}"
        # google-auth compares naive UTC datetimes.
        self.expiry = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + self.lifetime


@dataclass
class IdTokenStub:
    """Replaces google.oauth2.id_token.fetch_id_token_credentials; remembers the audiences asked for."""

    lifetime: datetime.timedelta = LONG
    error: Exception | None = None
    audiences: list[str] = field(default_factory=list)
    issued: list[StubIdTokenCredentials] = field(default_factory=list)

    def __call__(self, audience: str, request: Any = None, **_: Any) -> StubIdTokenCredentials:
        self.audiences.append(audience)
        if self.error is not None:
            raise self.error
        credentials = StubIdTokenCredentials(self.lifetime)
        self.issued.append(credentials)
        return credentials
