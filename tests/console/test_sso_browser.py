"""OpenID Connect sign-in end to end in Chromium: SAE under uvicorn, the real provider
(tests/oidc_server.py), the browser clicking the sign-in page's button, signing in at the
provider and landing in the console with the role its groups grant; and LDAP sign-in through
the console's password form against the real slapd (tests/ldap_server.py).

Skipped when chromium, Playwright, node, the provider's packages or slapd are missing — a
failure under ``SAE_REQUIRE_ALL=1``.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sae.config import Settings
from tests.conftest import require
from tests.console.test_browser import CHROMIUM, LAUNCH_ARGS, SHOTS, _free_port
from tests.ldap_server import Directory, slapd_fixture  # noqa: F401 - the fixture
from tests.oidc_server import Provider, oidc_provider

pytestmark = pytest.mark.browser

GROUPS = {
    "sae-archivistes": {"role": "archivist"},
    "depot-urbanisme": {"role": "depositor", "producers": ["URBA"]},
    "lecteurs": {"role": "reader"},
    "cn=SAE-Archivistes,ou=groups,dc=mairie,dc=test": {"role": "archivist"},
}


@dataclass
class Site:
    url: str
    provider: Provider
    settings: Settings


@pytest.fixture
def browser() -> Iterator[Any]:
    require(Path(CHROMIUM).is_file() or shutil.which("chromium"), f"{CHROMIUM} not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is a dev dependency
        require(False, "the playwright Python package is not installed")
        raise
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def site(settings: Settings, slapd: Directory) -> Iterator[Site]:
    """SAE with OIDC (the test provider) and LDAP (the test slapd) sign-in, on a free port."""
    import uvicorn

    from sae.app import create_app

    port = _free_port()
    callback = f"http://127.0.0.1:{port}/console/login/oidc/callback"
    with oidc_provider([callback]) as provider:
        configured = Settings(
            **{
                **settings.model_dump(),
                "group_roles": GROUPS,
                "oidc_issuer": provider.issuer,
                "oidc_client_id": provider.client_id,
                "oidc_client_secret": provider.client_secret,
                "oidc_allow_http": True,
                "oidc_scopes": "openid profile email groups",
                "ldap_url": slapd.url,
                "ldap_allow_plaintext": True,
                "ldap_bind_dn_template": "uid={login},ou=people,dc=mairie,dc=test",
            }
        )
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(configured),
                host="127.0.0.1",
                port=port,
                log_level="warning",
                ws="none",
                lifespan="on",
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped during startup"
            assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
            time.sleep(0.05)
        try:
            yield Site(f"http://127.0.0.1:{port}", provider, configured)
        finally:
            server.should_exit = True
            thread.join(timeout=30)


def _account(site: Site, login: str) -> Any:
    from sqlalchemy import select

    from sae.auth.models import User
    from sae.db import make_engine, make_sessionmaker

    engine = make_engine(site.settings.db_url)
    try:
        with make_sessionmaker(engine)() as session:
            return session.scalars(select(User).where(User.login == login)).one()
    finally:
        engine.dispose()


def _at_provider(page: Any, login: str) -> None:
    """The provider's development sign-in form, then its consent page."""
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_oidc_sign_in_end_to_end(site: Site, browser: Any) -> None:
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    page.goto(site.url + "/console/recherche")
    assert "/console/connexion" in page.url
    page.get_by_role("link", name="Se connecter avec le compte de la commune").click()
    page.wait_for_url(site.provider.issuer + "/**")
    state = next(c for c in context.cookies() if c["name"] == "sae_oidc")
    assert state["httpOnly"] is True
    assert state["sameSite"] == "Lax"
    _at_provider(page, "amartin")
    # Back where the person was going, signed in.
    page.wait_for_url(site.url + "/console/recherche")
    page.get_by_role("heading", level=1).wait_for()
    assert page.get_by_text("Archiviste").count() >= 1
    # Her account, made from what the provider vouched for and the groups' role.
    user = _account(site, "amartin")
    assert (user.display_name, user.email, user.source) == (
        "Anne Martin",
        "anne.martin@mairie.test",
        "oidc",
    )
    assert (user.role, list(user.producers)) == ("archivist", [])
    session = next(c for c in context.cookies() if c["name"] == "sae_console")
    assert session["httpOnly"] is True
    assert not [c for c in context.cookies() if c["name"] == "sae_oidc"]
    page.screenshot(path=str(SHOTS / "sae-console-oidc-signed-in.png"), full_page=True)
    # A page of the role: the archivist's transfers.
    page.goto(site.url + "/console/versements")
    assert page.get_by_role("heading", level=1).count() == 1
    context.close()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_oidc_person_in_no_mapped_group_refused(site: Site, browser: Any) -> None:
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    page.goto(site.url + "/console/connexion")
    page.get_by_role("link", name="Se connecter avec le compte de la commune").click()
    _at_provider(page, "cpetit")
    page.get_by_role("heading", name="Connexion refusée").wait_for()
    assert page.get_by_text("aucun de vos groupes ne donne accès").is_visible()
    assert not [c for c in context.cookies() if c["name"] == "sae_console"]
    page.screenshot(path=str(SHOTS / "sae-console-oidc-refused.png"), full_page=True)
    context.close()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_oidc_callback_without_a_sign_in_started_refused(site: Site, browser: Any) -> None:
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    response = page.goto(site.url + "/console/login/oidc/callback?code=stolen&state=guess")
    assert response is not None
    assert response.status == 401
    assert page.get_by_role("heading", name="Connexion refusée").is_visible()
    context.close()


def _password_sign_in(page: Any, site: Site, login: str, password: str) -> None:
    page.goto(site.url + "/console/connexion")
    page.get_by_label("Identifiant").fill(login)
    page.get_by_label("Mot de passe").fill(password)
    page.get_by_role("button", name="Se connecter", exact=True).click()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_ldap_sign_in_through_the_console(site: Site, browser: Any) -> None:
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()

    _password_sign_in(page, site, "bdurand", "wrong-password")
    page.get_by_text("Identifiant ou mot de passe incorrect").wait_for()

    # Known to the directory, in no mapped group: told so, in French.
    _password_sign_in(page, site, "cpetit", "Compta-2026!")
    page.get_by_text("aucun de vos groupes ne donne accès").wait_for()
    assert not [c for c in context.cookies() if c["name"] == "sae_console"]

    # The directory's password, the directory's groups: an archivist (her groups also grant
    # reader, the highest role wins).
    _password_sign_in(page, site, "AMartin", "Archives-2026!")
    page.wait_for_url(site.url + "/console/")
    assert page.get_by_text("Archiviste").count() >= 1
    user = _account(site, "amartin")
    assert (user.display_name, user.source, user.role) == ("Anne Martin", "ldap", "archivist")
    page.screenshot(path=str(SHOTS / "sae-console-ldap-signed-in.png"), full_page=True)
    context.close()
