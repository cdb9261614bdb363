"""Bearer API keys: each key belongs to a tenant, and the tenant scopes the response cache.

Keys come from a file (one ``key`` or ``key:tenant`` per line, ``#`` comments) and/or an
environment variable (comma-separated, same form). A key without a tenant is its own
tenant (named by a hash prefix, so the key itself never appears in metrics or logs).
Lookups compare every configured key in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from wattserve.errors import ConfigError
from wattserve.openai.answers import APIError

DEFAULT_TENANT = "default"


def _parse(entries: list[str], source: str) -> list[tuple[bytes, str]]:
    out = []
    for raw in entries:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, tenant = line.partition(":")
        key, tenant = key.strip(), tenant.strip()
        if len(key) < 8:
            raise ConfigError(f"{source}: API keys must be at least 8 characters")
        if not tenant:
            tenant = "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]
        out.append((key.encode(), tenant))
    return out


class ApiKeys:
    def __init__(self, keys: list[tuple[bytes, str]], required: bool | None = None) -> None:
        self.keys = keys
        self.required = bool(keys) if required is None else required
        if self.required and not keys:
            raise ConfigError("auth.required is set but no API keys were configured")

    @classmethod
    def load(
        cls, keys_file: str | None = None, keys_env: str | None = None, required: bool | None = None
    ) -> ApiKeys:
        keys: list[tuple[bytes, str]] = []
        if keys_file:
            p = Path(keys_file)
            if not p.is_file():
                raise ConfigError(f"API key file not found: {p}")
            keys += _parse(p.read_text().splitlines(), str(p))
        if keys_env and os.environ.get(keys_env):
            keys += _parse(os.environ[keys_env].split(","), f"${keys_env}")
        return cls(keys, required)

    def tenant(self, authorization: str | None) -> str:
        """The tenant of an ``Authorization`` header value; raises ``APIError`` 401."""
        if not self.required:
            if not authorization or not self.keys:
                return DEFAULT_TENANT
        if not authorization or not authorization.startswith("Bearer "):
            raise APIError(
                401,
                "missing bearer API key (Authorization: Bearer <key>)",
                type="authentication_error",
                code="invalid_api_key",
            )
        given = authorization[7:].strip().encode()
        found = None
        for key, tenant in self.keys:  # no early exit: time does not depend on which key matched
            if hmac.compare_digest(key, given):
                found = tenant
        if found is None:
            if not self.required:
                return DEFAULT_TENANT
            raise APIError(
                401, "invalid API key", type="authentication_error", code="invalid_api_key"
            )
        return found
