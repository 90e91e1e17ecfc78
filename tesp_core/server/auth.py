"""Authentication: who is calling, and may they act.

Three modes (setting ``auth_mode``):

- ``none``: everyone is the anonymous admin. Allowed only on a loopback address.
- ``basic``: HTTP Basic against ``basic_users`` (PBKDF2-SHA256 hashes, never plain text;
  ``tesp hash-password`` makes one).
- ``oidc``: bearer JWTs from an allow-list of issuers, with a required audience and an
  algorithm allow-list; each issuer's JWKS is found through its discovery document and
  cached (PyJWT's JWKS client), refreshed when a token names an unknown key.

A :class:`Principal` owns the tasks it creates; only an admin sees other users' tasks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import threading
from dataclasses import dataclass
from typing import Any

import requests

from tesp_core.config import Settings

log = logging.getLogger(__name__)

PBKDF2_ITERATIONS = 200_000


class AuthError(Exception):
    """Authentication failed (401). The message is safe to show; it never holds secrets."""

    def __init__(self, message: str, scheme: str = "bearer") -> None:
        super().__init__(message)
        self.scheme = scheme


class NotAllowedError(Exception):
    """Authenticated, but the role does not allow the action (403)."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    name: str
    is_admin: bool = False

    @property
    def owner_filter(self) -> str | None:
        """The owner to restrict reads to: None for admins (they see every task)."""
        return None if self.is_admin else self.name


ANONYMOUS_ADMIN = Principal("anonymous", is_admin=True)


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS) -> str:
    """A ``pbkdf2_sha256$iterations$salt$hash`` string for the config file."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    b64 = base64.urlsafe_b64encode
    return f"pbkdf2_sha256${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_password` string."""
    try:
        scheme, iterations, salt, digest = encoded.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        expected = base64.urlsafe_b64decode(digest)
        actual = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), base64.urlsafe_b64decode(salt), int(iterations)
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class BasicUser:
    """One configured HTTP Basic user."""

    password_hash: str
    roles: tuple[str, ...] = ("user",)


class BasicAuthenticator:
    """HTTP Basic against configured users."""

    def __init__(self, users: dict[str, BasicUser], *, admin_role: str, user_role: str) -> None:
        self._users = users
        self._admin_role = admin_role
        self._user_role = user_role
        # Spend the same time on unknown users as on known ones.
        self._dummy = hash_password(secrets.token_hex(8))

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal for an ``Authorization: Basic`` header."""
        if not authorization or not authorization.lower().startswith("basic "):
            raise AuthError("HTTP Basic credentials required", "basic")
        try:
            raw = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            name, _, password = raw.partition(":")
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise AuthError("malformed Basic credentials", "basic") from exc
        user = self._users.get(name)
        ok = verify_password(password, user.password_hash if user else self._dummy)
        if user is None or not ok:
            raise AuthError("invalid user name or password", "basic")
        return _principal(name, user.roles, self._admin_role, self._user_role)


class OidcAuthenticator:
    """Bearer JWTs from allowed issuers, verified against each issuer's JWKS."""

    def __init__(
        self,
        *,
        issuers: list[str],
        audience: str,
        algorithms: list[str],
        roles_claim: str,
        admin_role: str,
        user_role: str,
        leeway: float = 30.0,
    ) -> None:
        if not issuers or not audience:
            raise ValueError("OIDC needs oidc_issuers and oidc_audience")
        self._issuers = [i.rstrip("/") for i in issuers]
        self._audience = audience
        self._algorithms = algorithms
        self._roles_claim = roles_claim
        self._admin_role = admin_role
        self._user_role = user_role
        self._leeway = leeway
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal for an ``Authorization: Bearer <JWT>`` header."""
        import jwt

        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthError("a bearer token is required")
        token = authorization[7:].strip()
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("malformed bearer token") from exc
        issuer = str(unverified.get("iss", "")).rstrip("/")
        if issuer not in self._issuers:
            raise AuthError("token issuer is not trusted by this server")
        if header.get("alg") not in self._algorithms:
            raise AuthError("token algorithm is not allowed")
        try:
            key = self._jwks(issuer).get_signing_key_from_jwt(token).key
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=unverified.get("iss"),
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError("token audience does not match this server") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"token rejected: {type(exc).__name__}") from exc
        roles = claims.get(self._roles_claim) or []
        if isinstance(roles, str):
            roles = roles.split()
        return _principal(
            f"{issuer}#{claims['sub']}", tuple(map(str, roles)), self._admin_role, self._user_role
        )

    def _jwks(self, issuer: str) -> Any:
        import jwt

        with self._lock:
            client = self._clients.get(issuer)
            if client is None:
                try:
                    doc = requests.get(
                        f"{issuer}/.well-known/openid-configuration", timeout=10
                    ).json()
                    jwks_uri = str(doc["jwks_uri"])
                except (requests.RequestException, ValueError, KeyError) as exc:
                    raise AuthError("the token issuer's keys cannot be fetched") from exc
                # PyJWKClient caches the key set and refetches on an unknown key id.
                client = jwt.PyJWKClient(jwks_uri, cache_keys=True, lifespan=3600)
                self._clients[issuer] = client
            return client


def _principal(name: str, roles: tuple[str, ...], admin_role: str, user_role: str) -> Principal:
    if admin_role in roles:
        return Principal(name, is_admin=True)
    if user_role and user_role not in roles:
        raise NotAllowedError(f"the role {user_role!r} is required")
    return Principal(name)


Authenticator = BasicAuthenticator | OidcAuthenticator | None


def build_authenticator(settings: Settings) -> Authenticator:
    """The authenticator for ``settings.auth_mode`` (None for ``none``)."""
    if settings.auth_mode == "basic":
        users = {
            name: BasicUser(u.password_hash.get_secret_value(), tuple(u.roles))
            for name, u in settings.basic_users.items()
        }
        if not users:
            raise ValueError("auth_mode 'basic' needs at least one entry in basic_users")
        return BasicAuthenticator(
            users, admin_role=settings.admin_role, user_role=settings.user_role
        )
    if settings.auth_mode == "oidc":
        return OidcAuthenticator(
            issuers=settings.oidc_issuers,
            audience=settings.oidc_audience or "",
            algorithms=settings.oidc_algorithms,
            roles_claim=settings.oidc_roles_claim,
            admin_role=settings.admin_role,
            user_role=settings.user_role,
        )
    return None
