"""OpenID Connect sign-in against a real provider (panva's oidc-provider, tests/oidc_server.py),
driven here without a browser (tests/console/test_sso_browser.py does it in Chromium): the
whole code + PKCE flow, then the ID token checks, with the provider's real tokens and JWKS."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import pytest
from joserfc import jwk, jwt

from sae.auth.errors import SignInRefused
from sae.auth.groups import resolve_role
from sae.auth.oidc import LoginState, OidcClient, StateSigner
from sae.config import Settings
from tests.oidc_server import Provider, oidc_provider

CALLBACK = "http://127.0.0.1:9/console/login/oidc/callback"
MAPPING: dict[str, Any] = {
    "sae-archivistes": {"role": "archivist"},
    "depot-urbanisme": {"role": "depositor", "producers": ["URBA"]},
    "lecteurs": {"role": "reader"},
}


def client_for(provider: Provider, **more: Any) -> OidcClient:
    values: dict[str, Any] = {
        "oidc_issuer": provider.issuer,
        "oidc_client_id": provider.client_id,
        "oidc_client_secret": provider.client_secret,
        "oidc_allow_http": True,
        "oidc_scopes": "openid profile email groups",
        "group_roles": MAPPING,
    }
    values.update(more)
    return OidcClient(Settings(**values), secrets.token_bytes(32))


def sign_in_at_provider(authorize_url: str, login: str) -> dict[str, str]:
    """Go through the provider's pages as a browser would (its development sign-in form, then
    its consent form) until it sends the browser back to SAE: the callback's parameters."""
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        url = authorize_url
        for _ in range(12):
            if url.startswith(CALLBACK):
                return dict(parse_qsl(urlsplit(url).query))
            page = browser.get(url)
            if page.is_redirect:
                url = urljoin(url, page.headers["location"])
                continue
            assert page.status_code == 200, page.text
            action = re.search(r'<form[^>]*action="([^"]+)"', page.text)
            assert action is not None, page.text
            fields = dict(
                re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text)
            )
            if 'name="login"' in page.text:
                fields.update(login=login, password="any")  # noqa: S106 - the dev form
            answer = browser.post(urljoin(url, action.group(1)), data=fields)
            assert answer.is_redirect, answer.text
            url = urljoin(url, answer.headers["location"])
        raise AssertionError("the provider never sent the browser back")


@dataclass
class Flow:
    client: OidcClient
    cookie: str
    params: dict[str, str]


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with oidc_provider([CALLBACK]) as running:
        yield running


def start(provider: Provider, login: str = "amartin", **more: Any) -> Flow:
    client = client_for(provider, **more)
    url, cookie = client.begin(CALLBACK, "/console/")
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["code_challenge_method"] == "S256"
    assert query["response_type"] == "code"
    return Flow(client, cookie, sign_in_at_provider(url, login))


def test_code_flow_with_pkce_signs_in(provider: Provider) -> None:
    flow = start(provider)
    assert set(flow.params) >= {"code", "state", "iss"}
    identity, state = flow.client.finish(flow.cookie, flow.params)
    assert identity.login == "amartin"
    assert identity.display_name == "Anne Martin"
    assert identity.email == "anne.martin@mairie.test"
    assert identity.source == "oidc"
    assert set(identity.groups) == {"sae-archivistes", "lecteurs"}
    assert state.next == "/console/"
    grant = resolve_role(identity.login, identity.groups, flow.client.settings.group_roles)
    assert grant.role == "archivist"


def test_groups_from_userinfo_when_the_id_token_has_none() -> None:
    with oidc_provider([CALLBACK], claims_in="userinfo") as provider:
        flow = start(provider, "bdurand")
        identity, _ = flow.client.finish(flow.cookie, flow.params)
    assert identity.display_name == "Bruno Durand"
    assert set(identity.groups) == {"depot-urbanisme", "lecteurs"}


def test_a_code_is_good_once(provider: Provider) -> None:
    flow = start(provider)
    flow.client.finish(flow.cookie, flow.params)
    with pytest.raises(SignInRefused):
        flow.client.finish(flow.cookie, flow.params)


def test_state_from_another_browser_refused(provider: Provider) -> None:
    flow = start(provider)
    _, other_cookie = flow.client.begin(CALLBACK, "/console/")
    with pytest.raises(SignInRefused):
        flow.client.finish(other_cookie, flow.params)  # login CSRF: someone else's code
    with pytest.raises(SignInRefused):
        flow.client.finish(None, flow.params)  # no sign-in started in this browser


def test_forged_or_stale_cookie_refused(provider: Provider) -> None:
    flow = start(provider)
    state = flow.client.signer.load(flow.cookie)
    forged = StateSigner(secrets.token_bytes(32)).dump(state)
    with pytest.raises(SignInRefused):
        flow.client.finish(forged, flow.params)
    body, mac = flow.cookie.split(".")
    with pytest.raises(SignInRefused):
        flow.client.finish(body[:-2] + "AA." + mac, flow.params)
    stale = flow.client.signer.dump(replace(state, expires=int(time.time()) - 1))
    with pytest.raises(SignInRefused, match="trop de temps"):
        flow.client.finish(stale, flow.params)


def test_stolen_code_without_the_verifier_refused(provider: Provider) -> None:
    flow = start(provider)
    state = flow.client.signer.load(flow.cookie)
    wrong: LoginState = replace(state, verifier=secrets.token_urlsafe(64))
    with pytest.raises(SignInRefused):
        flow.client.finish(flow.client.signer.dump(wrong), flow.params)


def test_answer_from_another_issuer_refused(provider: Provider) -> None:
    flow = start(provider)
    with pytest.raises(SignInRefused):
        flow.client.finish(flow.cookie, {**flow.params, "iss": "https://evil.example"})
    # This provider names itself in every answer (RFC 9207): one that does not is not its own.
    without = {k: v for k, v in flow.params.items() if k != "iss"}
    with pytest.raises(SignInRefused):
        flow.client.finish(flow.cookie, without)
    flow.client.finish(flow.cookie, flow.params)  # the code was never spent above


def test_provider_error_refused_in_french(provider: Provider) -> None:
    flow = start(provider)
    params = {"state": flow.params["state"], "iss": flow.params["iss"], "error": "access_denied"}
    with pytest.raises(SignInRefused, match="n'a pas autorisé"):
        flow.client.finish(flow.cookie, params)


# --- the ID token, with the provider's real tokens and keys -----------------------------------


@dataclass
class Issued:
    client: OidcClient
    id_token: str
    nonce: str
    claims: dict[str, Any]


@pytest.fixture
def issued(provider: Provider) -> Issued:
    """A real ID token of the provider, through the flow, not yet checked."""
    flow = start(provider)
    state = flow.client.signer.load(flow.cookie)
    tokens = flow.client._exchange(flow.params["code"], state)  # noqa: SLF001 - one step
    id_token = tokens["id_token"]
    claims = json.loads(_unb64(id_token.split(".")[1]))
    return Issued(flow.client, id_token, state.nonce, claims)


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_the_real_token_passes(issued: Issued) -> None:
    claims = issued.client.validate_id_token(issued.id_token, nonce=issued.nonce)
    assert claims["sub"] == "amartin"
    assert claims["aud"] == issued.client.client_id


def test_tampered_token_refused(issued: Issued) -> None:
    header, payload, signature = issued.id_token.split(".")
    changed = {**issued.claims, "groups": ["sae-admins"]}
    tampered = ".".join([header, _b64(json.dumps(changed).encode()), signature])
    with pytest.raises(SignInRefused):
        issued.client.validate_id_token(tampered, nonce=issued.nonce)
    broken = issued.id_token[:-4] + ("AAAA" if not issued.id_token.endswith("AAAA") else "BBBB")
    with pytest.raises(SignInRefused):
        issued.client.validate_id_token(broken, nonce=issued.nonce)


def test_token_signed_by_another_key_refused(issued: Issued) -> None:
    header = json.loads(_unb64(issued.id_token.split(".")[0]))
    impostor = jwk.RSAKey.generate_key(2048, parameters={"kid": header["kid"]})
    forged = jwt.encode({"alg": "RS256", "kid": header["kid"]}, issued.claims, impostor)
    with pytest.raises(SignInRefused):
        issued.client.validate_id_token(forged, nonce=issued.nonce)


def test_none_and_hmac_algorithms_refused(issued: Issued) -> None:
    unsigned = ".".join([_b64(b'{"alg":"none"}'), _b64(json.dumps(issued.claims).encode()), ""])
    with pytest.raises(SignInRefused):
        issued.client.validate_id_token(unsigned, nonce=issued.nonce)
    # HS256 under the client secret: anyone holding the secret could mint it.
    secret = jwk.OctKey.import_key(issued.client.settings.oidc_client_secret.get_secret_value())  # type: ignore[union-attr]
    hmac_token = jwt.encode({"alg": "HS256"}, issued.claims, secret, algorithms=["HS256"])
    with pytest.raises(SignInRefused):
        issued.client.validate_id_token(hmac_token, nonce=issued.nonce)


def test_expired_token_refused(issued: Issued) -> None:
    expiry = issued.claims["exp"]
    # Within the minute of clock skew: still good; after it: refused.
    issued.client.validate_id_token(issued.id_token, nonce=issued.nonce, now=expiry + 30)
    with pytest.raises(SignInRefused):
        issued.client.validate_id_token(issued.id_token, nonce=issued.nonce, now=expiry + 61)


def test_wrong_nonce_refused(issued: Issued) -> None:
    with pytest.raises(SignInRefused):
        issued.client.validate_id_token(issued.id_token, nonce=secrets.token_urlsafe(32))


def test_token_for_another_client_refused(issued: Issued, provider: Provider) -> None:
    other = client_for(provider, oidc_client_id="another-application")
    with pytest.raises(SignInRefused):
        other.validate_id_token(issued.id_token, nonce=issued.nonce)


def test_state_key_derived_from_the_client_secret_or_kept_in_a_file(tmp_path: Path) -> None:
    from sae.auth.oidc import state_key

    base: dict[str, Any] = {
        "data_dir": tmp_path,
        "oidc_issuer": "https://idp.mairie.example",
        "oidc_client_id": "sae",
        "group_roles": MAPPING,
    }
    confidential = state_key(Settings(**base, oidc_client_secret="s3cret-of-the-client"))
    assert confidential == state_key(Settings(**base, oidc_client_secret="s3cret-of-the-client"))
    assert confidential != state_key(Settings(**base, oidc_client_secret="another-secret"))
    assert not (tmp_path / "keys" / "oidc-state.key").exists()
    public = state_key(Settings(**base))
    path = tmp_path / "keys" / "oidc-state.key"
    assert len(public) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert state_key(Settings(**base)) == public  # every later start reads the same key


def test_discovery_naming_another_issuer_refused(provider: Provider) -> None:
    # The same server reached by another name: its discovery document names the issuer it was
    # given, not the one configured (OpenID Connect Discovery §4.3).
    from sae.auth.errors import DirectoryUnavailable

    client = client_for(provider, oidc_issuer=provider.issuer.replace("127.0.0.1", "localhost"))
    with pytest.raises(DirectoryUnavailable, match="ne répond pas"):
        client.begin(CALLBACK, "/console/")
