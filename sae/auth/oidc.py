"""Sign-in with an OpenID Connect provider (the commune's or its intercommunality's: Keycloak,
LemonLDAP::NG, Microsoft Entra ID, …), as a relying party using the authorization code flow.

The flow, and what each step defends against:

1. :meth:`OidcClient.begin` draws a ``state``, a ``nonce`` and a PKCE verifier (RFC 7636, S256),
   and returns the provider's authorization URL and a **signed** value for a cookie that binds
   the three to this browser (HMAC-SHA256, ten minutes). Nothing is stored on the server, so any
   instance can finish the flow.
2. The provider sends the browser back with ``code`` and ``state``. :meth:`OidcClient.finish`
   checks the cookie's signature and age and that the ``state`` is the cookie's (a sign-in
   started elsewhere — login CSRF — is refused), and, when the provider says who it is
   (RFC 9207 ``iss``), that it is ours (mix-up).
3. The code is exchanged at the token endpoint with the PKCE verifier (a stolen code is useless
   without it) and the client's credentials.
4. The ID token is verified against the provider's published keys (JWKS, fetched again once
   when a token names a key not seen yet: key rotation), with an algorithm from
   ``SAE_OIDC_ALGORITHMS`` (never ``none``, never HMAC); then ``iss`` (the configured issuer,
   exactly), ``aud`` (our client id; ``azp`` when there are several), ``exp``/``iat``/``nbf``
   (one minute of clock skew) and ``nonce`` (the cookie's: a replayed ID token is refused).
5. The person's groups come from ``SAE_OIDC_GROUPS_CLAIM`` in the ID token or, when it is not
   there, from the userinfo endpoint (whose ``sub`` must be the ID token's).

The discovery document (``/.well-known/openid-configuration``) must name the configured issuer
exactly (OpenID Connect Discovery §4.3). Network failures become
:class:`~sae.auth.errors.DirectoryUnavailable`; everything else that goes wrong becomes
:class:`~sae.auth.errors.SignInRefused` with a French message for the sign-in page and the
technical reason in the log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from sae.auth.accounts import ExternalIdentity, fold_login
from sae.auth.errors import DirectoryUnavailable, InvalidAccount, SignInRefused
from sae.config import Settings

log = logging.getLogger("sae.auth.oidc")

STATE_TTL_SECONDS = 600  # the time a person has to sign in at the provider
CLOCK_SKEW_SECONDS = 60
METADATA_TTL_SECONDS = 3600
REFUSED = (
    "La connexion par le compte de la commune a échoué. Recommencez depuis la page de connexion."
)


@dataclass(frozen=True)
class LoginState:
    """What the browser's cookie holds between the two legs of the flow."""

    state: str
    nonce: str
    verifier: str
    redirect_uri: str
    next: str
    expires: int


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StateSigner:
    """Signs and checks the login-state cookie (HMAC-SHA256 under a server key)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the state key must be at least 32 bytes")
        self._key = key

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, b"sae-oidc-state-v1." + body.encode(), "sha256").digest())

    def dump(self, state: LoginState) -> str:
        body = _b64(json.dumps(asdict(state), separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}"

    def load(self, value: str | None, *, now: float | None = None) -> LoginState:
        """The state in ``value``; :class:`SignInRefused` when missing, forged or stale."""
        if not value or value.count(".") != 1:
            raise _refused(REFUSED, "no sign-in in progress in this browser")
        body, mac = value.split(".")
        if not hmac.compare_digest(self._mac(body), mac):
            raise _refused(REFUSED, "the sign-in cookie's signature is wrong")
        try:
            state = LoginState(**json.loads(_unb64(body)))
        except (ValueError, TypeError):
            raise _refused(REFUSED, "the sign-in cookie is unreadable") from None
        if state.expires < (time.time() if now is None else now):
            raise _refused(
                "La connexion a pris trop de temps. Recommencez depuis la page de connexion.",
                "the sign-in cookie has expired",
            )
        return state


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the discovery document SAE uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    token_auth_methods: tuple[str, ...]
    iss_parameter: bool = False  # RFC 9207: the answer names its issuer


class OidcClient:
    """SAE as a relying party of one OpenID Connect provider (``SAE_OIDC_*``)."""

    def __init__(
        self,
        settings: Settings,
        state_key: bytes,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.oidc_issuer is None or settings.oidc_client_id is None:
            raise ValueError("SAE_OIDC_ISSUER and SAE_OIDC_CLIENT_ID are not set")
        self.settings = settings
        self.issuer: str = settings.oidc_issuer
        self.client_id: str = settings.oidc_client_id
        self.signer = StateSigner(state_key)
        self._clock = clock
        self._lock = threading.Lock()
        self._metadata: tuple[float, ProviderMetadata] | None = None
        self._keys: KeySet | None = None

    def _client(self) -> httpx.Client:
        # One connection per call: sign-ins are rare, and nothing is left open between them.
        s = self.settings
        return httpx.Client(
            timeout=s.oidc_timeout_seconds,
            verify=str(s.oidc_ca_file) if s.oidc_ca_file else True,
            follow_redirects=False,
            headers={"Accept": "application/json"},
        )

    # --- the provider's documents ------------------------------------------------------------

    def _get_json(self, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            with self._client() as http:
                answer = http.get(url, **kwargs)
        except httpx.HTTPError as exc:
            log.warning("auth.oidc_unavailable: GET %s: %s", url, exc)
            raise _unavailable() from None
        if answer.status_code != 200:
            log.warning("auth.oidc_unavailable: GET %s: HTTP %s", url, answer.status_code)
            raise _unavailable()
        try:
            document = answer.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            log.warning("auth.oidc_unavailable: GET %s: not a JSON object", url)
            raise _unavailable()
        return document

    def metadata(self) -> ProviderMetadata:
        """The provider's discovery document (kept an hour)."""
        with self._lock:
            cached = self._metadata
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        doc = self._get_json(url)
        if doc.get("issuer") != self.issuer:
            # Discovery §4.3: the document must name the issuer we were configured with.
            log.warning("auth.oidc_refused: %s names issuer %r", url, doc.get("issuer"))
            raise _unavailable()
        methods = doc.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            log.warning("auth.oidc_refused: the provider does not support PKCE S256")
            raise _unavailable()
        http = self.settings.oidc_allow_http
        try:
            meta = ProviderMetadata(
                issuer=doc["issuer"],
                authorization_endpoint=_url(doc["authorization_endpoint"], http),
                token_endpoint=_url(doc["token_endpoint"], http),
                jwks_uri=_url(doc["jwks_uri"], http),
                userinfo_endpoint=_url(doc["userinfo_endpoint"], http)
                if doc.get("userinfo_endpoint")
                else None,
                token_auth_methods=tuple(
                    doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
                ),
                iss_parameter=doc.get("authorization_response_iss_parameter_supported") is True,
            )
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("auth.oidc_refused: discovery document incomplete: %s", exc)
            raise _unavailable() from None
        with self._lock:
            self._metadata = (self._clock() + METADATA_TTL_SECONDS, meta)
        return meta

    def keys(self, *, refresh: bool = False) -> KeySet:
        """The provider's signing keys (JWKS), fetched once and again on ``refresh``."""
        with self._lock:
            keys = self._keys
        if keys is not None and not refresh:
            return keys
        doc = self._get_json(self.metadata().jwks_uri)
        try:
            public = [k for k in doc.get("keys", []) if isinstance(k, dict) and "d" not in k]
            keys = KeySet.import_key_set({"keys": public})
        except (JoseError, ValueError, TypeError) as exc:
            log.warning("auth.oidc_unavailable: unreadable JWKS: %s", exc)
            raise _unavailable() from None
        with self._lock:
            self._keys = keys
        return keys

    # --- the flow -----------------------------------------------------------------------------

    def begin(self, redirect_uri: str, next_page: str) -> tuple[str, str]:
        """The provider's authorization URL and the signed cookie value for this browser."""
        meta = self.metadata()
        state = LoginState(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            verifier=secrets.token_urlsafe(64),  # 86 characters, within RFC 7636's 43-128
            redirect_uri=redirect_uri,
            next=next_page,
            expires=int(self._clock()) + STATE_TTL_SECONDS,
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": self.settings.oidc_scopes,
                "state": state.state,
                "nonce": state.nonce,
                "code_challenge": pkce_challenge(state.verifier),
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in meta.authorization_endpoint else "?"
        return f"{meta.authorization_endpoint}{separator}{query}", self.signer.dump(state)

    def finish(
        self, cookie: str | None, params: Mapping[str, str]
    ) -> tuple[ExternalIdentity, LoginState]:
        """The person the provider vouches for, after every check of the module's docstring."""
        state = self.signer.load(cookie, now=self._clock())
        if not _same(state.state, params.get("state")):
            raise _refused(REFUSED, "the state does not match this browser's")
        if "iss" not in params and self.metadata().iss_parameter:
            # RFC 9207 §2.4: a provider that names itself in its answers always does.
            raise _refused(REFUSED, "the answer does not name its issuer (RFC 9207)")
        if "iss" in params and params["iss"] != self.issuer:
            raise _refused(REFUSED, f"answer from another issuer {params['iss']!r}")
        if "error" in params:
            log.info(
                "auth.oidc_refused: the provider answered %s: %s",
                params.get("error"),
                params.get("error_description", ""),
            )
            raise _refused(
                "Le fournisseur d'identité n'a pas autorisé la connexion.",
                f"provider error {params.get('error')!r}",
            )
        code = params.get("code")
        if not code:
            raise _refused(REFUSED, "no authorization code")
        tokens = self._exchange(code, state)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise _refused(REFUSED, "the token response has no ID token")
        claims = self.validate_id_token(id_token, nonce=state.nonce)
        access_token = tokens.get("access_token")
        return self._identity(
            claims, access_token if isinstance(access_token, str) else None
        ), state

    def _exchange(self, code: str, state: LoginState) -> dict[str, Any]:
        meta = self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": state.redirect_uri,
            "code_verifier": state.verifier,
        }
        auth: httpx.Auth | None = None
        secret = self.settings.oidc_client_secret
        if secret is None:
            form["client_id"] = self.client_id  # a public client: PKCE is its proof
        elif "client_secret_basic" in meta.token_auth_methods:
            # RFC 6749 §2.3.1: both parts form-encoded before Basic.
            auth = httpx.BasicAuth(
                quote_plus(self.client_id), quote_plus(secret.get_secret_value())
            )
        else:
            form["client_id"] = self.client_id
            form["client_secret"] = secret.get_secret_value()
        try:
            with self._client() as http:
                if auth is None:
                    answer = http.post(meta.token_endpoint, data=form)
                else:
                    answer = http.post(meta.token_endpoint, data=form, auth=auth)
        except httpx.HTTPError as exc:
            log.warning("auth.oidc_unavailable: token endpoint: %s", exc)
            raise _unavailable() from None
        try:
            body = answer.json()
        except ValueError:
            body = None
        if answer.status_code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            raise _refused(
                REFUSED, f"the token endpoint refused the code: HTTP {answer.status_code} {error}"
            )
        return body

    def validate_id_token(
        self, id_token: str, *, nonce: str, now: float | None = None
    ) -> dict[str, Any]:
        """The claims of ``id_token`` once signature and claims are checked (OIDC Core §3.1.3.7).

        ``now`` (seconds) replaces the clock, for tests.
        """
        if id_token.count(".") != 2:
            raise _refused(REFUSED, "the ID token is not a signed JWT")
        algorithms = list(self.settings.oidc_algorithms)
        try:
            token = jwt.decode(id_token, self.keys(), algorithms=algorithms)
        except InvalidKeyIdError:
            # A key the provider added since we fetched its JWKS (rotation): fetch once more.
            try:
                token = jwt.decode(id_token, self.keys(refresh=True), algorithms=algorithms)
            except JoseError as second:
                raise _bad_token(second) from None
        except (JoseError, ValueError, TypeError) as exc:
            raise _bad_token(exc) from None
        claims = token.claims
        when = int(self._clock() if now is None else now)
        registry = jwt.JWTClaimsRegistry(
            now=when,
            leeway=CLOCK_SKEW_SECONDS,
            iss={"essential": True, "value": self.issuer},
            sub={"essential": True},
            aud={"essential": True, "value": self.client_id},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise _bad_token(exc) from None
        audience = claims["aud"]
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != self.client_id:
            raise _bad_token(ValueError("several audiences and azp is not SAE's client id"))
        if not _same(nonce, claims.get("nonce")):  # checked above too; never skipped
            raise _bad_token(ValueError("nonce"))
        return dict(claims)

    def _identity(self, claims: dict[str, Any], access_token: str | None) -> ExternalIdentity:
        s = self.settings
        merged = dict(claims)
        meta = self.metadata()
        if s.oidc_groups_claim not in claims and access_token and meta.userinfo_endpoint:
            info = self._get_json(
                meta.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"}
            )
            if info.get("sub") != claims["sub"]:  # OIDC Core §5.3.4
                raise _refused(REFUSED, "userinfo is about another subject")
            merged = {**info, **claims}
        groups = merged.get(s.oidc_groups_claim, [])
        if isinstance(groups, str):
            groups = [groups]
        if not isinstance(groups, list):
            groups = []
        login = _login(merged.get(s.oidc_login_claim), merged["sub"])
        name = merged.get("name") or " ".join(
            str(part) for part in (merged.get("given_name"), merged.get("family_name")) if part
        )
        email = merged.get("email") if merged.get("email_verified", True) is not False else None
        return ExternalIdentity(
            login=login,
            display_name=str(name or login),
            email=str(email or ""),
            groups=tuple(str(g) for g in groups if isinstance(g, str | int)),
            source="oidc",
        )


def state_key(settings: Settings) -> bytes:
    """The key that signs the login-state cookie, the same on every instance of a deployment.

    With a client secret (a confidential client, the usual case), derived from it: every
    instance has it already. Without one (a public client), a random key kept in
    ``$SAE_DATA_DIR/keys/oidc-state.key`` (0600), made on first use.
    """
    secret = settings.oidc_client_secret
    if secret is not None:
        return hmac.new(
            secret.get_secret_value().encode(), b"sae-oidc-state-key-v1", "sha256"
        ).digest()
    path = settings.data_dir / "keys" / "oidc-state.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) < 32:
            raise ValueError(f"{path} holds no key: remove it, a new one will be made") from None
        return key
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(32))
    return path.read_bytes()


def _login(claimed: object, sub: object) -> str:
    """The account's login: the configured claim when it makes a valid login, else ``sub``."""
    for candidate in (claimed, sub):
        if isinstance(candidate, str) and candidate:
            try:
                return fold_login(candidate)
            except InvalidAccount:
                continue
    raise _refused(REFUSED, f"no usable login in the ID token (sub {sub!r})")


def _same(expected: str, given: object) -> bool:
    if not isinstance(given, str) or not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def _url(value: object, http: bool) -> str:
    schemes = ("https://", "http://") if http else ("https://",)
    if not isinstance(value, str) or not value.startswith(schemes):
        raise ValueError(f"not an {' or '.join(schemes)} URL: {value!r}")
    return value


def _unavailable() -> DirectoryUnavailable:
    return DirectoryUnavailable(
        "Le fournisseur d'identité de la commune ne répond pas ; réessayez dans quelques minutes."
    )


def _refused(message: str, reason: str) -> SignInRefused:
    """The French refusal shown to the person; the technical reason goes to the log only."""
    log.warning("auth.oidc_refused: %s", reason)
    return SignInRefused(message)


def _bad_token(reason: object) -> SignInRefused:
    return _refused(REFUSED, f"ID token refused: {type(reason).__name__}: {reason}")
