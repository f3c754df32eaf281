"""The service's secrets: new ones made, stored ones hashed or encrypted, shown ones masked.

- Organization, user and instance secrets are random (32 bytes, URL-safe text) and
  stored as their SHA-256: the database alone cannot authenticate anyone.
- Instance bodies and token pairs are encrypted with the operator's key
  (``SAGESQL_SECRET_KEY``, a Fernet key: AES-128-CBC with an HMAC-SHA256, the
  ``cryptography`` project's well-reviewed recipe). A database opened with another key
  is refused at start, before anything is decrypted wrongly.
- What the API answers shows the configuration with every secret masked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from sagesql.connector.properties import BY_KEY
from sagesql.errors import ConfigurationError

MASK = "********"
KEY_CHECK = "secret_key_check"
_CHECK_TEXT = b"sagesql service key check"
# Configuration keys whose values are credentials, as the platforms name them
# (oauth.api.secret, signing.key, event.notification.basic.password, subscription.key...).
_SECRET_NAME = re.compile(r"(secret|password|passwd|token|signing|signature|subscription|\.key$)")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def new_id() -> str:
    return secrets.token_hex(8)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class SecretBox:
    """Encrypts and decrypts with the operator's key."""

    def __init__(self, key: str | None) -> None:
        if not key:
            raise ConfigurationError(
                "SAGESQL_SECRET_KEY is not set: the service encrypts instance secrets with it",
                hint='generate one with `python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"` and keep it safe',
            )
        try:
            self._fernet = Fernet(key.strip().encode("ascii"))
            # A separate key for the operations page's cookies, derived from the same secret.
            self._mac_key = hashlib.sha256(b"sagesql-page\n" + key.strip().encode("ascii")).digest()
        except (ValueError, UnicodeEncodeError):
            raise ConfigurationError(
                "SAGESQL_SECRET_KEY is not a Fernet key (32 bytes, URL-safe base64)",
                hint="generate one with Fernet.generate_key()",
            ) from None

    def seal(self, data: Any) -> bytes:
        """JSON data, encrypted."""
        return self._fernet.encrypt(json.dumps(data).encode("utf-8"))

    def open(self, token: bytes) -> Any:
        try:
            return json.loads(self._fernet.decrypt(token))
        except InvalidToken:
            raise ConfigurationError(
                "a stored secret cannot be decrypted with SAGESQL_SECRET_KEY",
                hint="start the service with the key the database was created with",
            ) from None

    def sign(self, text: str) -> str:
        return hmac.new(self._mac_key, text.encode("utf-8"), hashlib.sha256).hexdigest()

    def verify(self, text: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(text), signature)

    def check_value(self) -> str:
        return self._fernet.encrypt(_CHECK_TEXT).decode("ascii")

    def matches(self, check_value: str) -> bool:
        try:
            return self._fernet.decrypt(check_value.encode("ascii")) == _CHECK_TEXT
        except InvalidToken:
            return False


def is_secret(name: str) -> bool:
    prop = BY_KEY.get(name.lower())
    if prop is not None:
        return prop.secret
    return bool(_SECRET_NAME.search(name.lower()))


def masked(configuration: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration with every credential's value replaced by ``********``."""
    return {
        key: (MASK if is_secret(str(key)) and value not in (None, "") else value)
        for key, value in configuration.items()
    }


def secret_values(body: Mapping[str, Any]) -> list[str]:
    """Every secret an instance body holds (for tests and log redaction)."""
    conf = body.get("configuration")
    found = [
        str(v)
        for k, v in (conf.items() if isinstance(conf, Mapping) else ())
        if is_secret(str(k)) and v not in (None, "")
    ]
    provider = body.get("providerData")
    if isinstance(provider, Mapping) and provider.get("code"):
        found.append(str(provider["code"]))
    return found
