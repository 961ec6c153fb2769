"""End to end in a real browser: SAE served by uvicorn on a free local port, driven by Debian's
chromium through Playwright. Screenshots of the main pages go to /tmp/sae-console-*.png.

Skipped when chromium or Playwright is missing — a failure under ``SAE_REQUIRE_ALL=1``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sae.config import Settings
from tests.conftest import TEST_RULES_CSV, require
from tests.console.helpers import sip
from tests.sipfactory import FileSpec, build_zip, simple_sip

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("SAE_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path("/tmp")
PAYLOAD = b"%PDF-1.4\n% un arr\xc3\xaat\xc3\xa9 de voirie\n%%EOF\n"


@dataclass
class Served:
    """A running SAE: its base URL and admin token."""

    url: str
    admin: str
    settings: Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def served(settings: Settings) -> Iterator[Served]:
    """SAE under uvicorn in a thread, on 127.0.0.1 and a free port, with the test rules."""
    import uvicorn

    from sae.app import create_app

    port = _free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws="none",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped during startup"
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    admin = (settings.data_dir / "admin.token").read_text().strip()
    answer = httpx.put(
        f"{url}/api/v1/rules",
        content=TEST_RULES_CSV.encode(),
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "text/csv"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    try:
        yield Served(url, admin, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, through Playwright (never a downloaded browser)."""
    require(Path(CHROMIUM).is_file() or shutil.which("chromium"), f"{CHROMIUM} not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is a dev dependency
        require(False, "the playwright Python package is not installed")
        raise
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _login(page: Any, served: Served, token: str) -> None:
    page.goto(served.url + "/")
    assert "/console/connexion" in page.url
    page.get_by_text("Se connecter avec un jeton d'accès").click()
    page.get_by_label("Jeton d'accès").fill(token)
    page.get_by_role("button", name="Se connecter avec le jeton").click()
    page.wait_for_url(served.url + "/console/")


def _menu(page: Any, name: str) -> None:
    """Follow an entry of the main menu."""
    page.get_by_role("navigation", name="Menu principal").get_by_role(
        "link", name=name, exact=True
    ).click()


def _new_token(served: Served, role: str, producers: list[str]) -> str:
    from sae.auth.service import create_token
    from sae.db import make_engine, make_sessionmaker, transaction

    engine = make_engine(served.settings.db_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            _, secret = create_token(session, role=role, producers=producers)
    finally:
        engine.dispose()
    return secret


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_archive_find_download_and_see_the_journal(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    context = browser.new_context(accept_downloads=True, locale="fr-FR")
    page = context.new_page()

    # Sign in: the token lands in an HttpOnly, SameSite=Strict cookie.
    _login(page, served, served.admin)
    cookie = next(c for c in context.cookies() if c["name"] == "sae_console")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie").find("sae_console") == -1
    page.screenshot(path=str(SHOTS / "sae-console-dashboard-empty.png"), full_page=True)

    # Deposit a SIP through the form.
    sip_path = tmp_path / "versement voirie.zip"
    sip_path.write_bytes(sip("MSG-BROWSER-1"))
    _menu(page, "Versements")
    page.get_by_label("Paquet ZIP").set_input_files(str(sip_path))
    page.get_by_role("button", name="Déposer").click()
    page.get_by_text("Versement accepté.").wait_for()
    assert page.get_by_role("heading", level=1).inner_text().startswith("Versement MSG-BROWSER-1")
    page.screenshot(path=str(SHOTS / "sae-console-transfer-ok.png"), full_page=True)

    # A refused one: every fault in plain French.
    bad = simple_sip("MSG-BROWSER-BAD")
    bad.files = [FileSpec(uri=bad.files[0].uri, data=b"%PDF-1.4 x", digest="0" * 128)]
    bad_path = tmp_path / "versement abîmé.zip"
    bad_path.write_bytes(build_zip(bad))
    _menu(page, "Versements")
    page.get_by_label("Paquet ZIP").set_input_files(str(bad_path))
    page.get_by_role("button", name="Déposer").click()
    page.get_by_text("Ce versement a été refusé.").wait_for()
    assert page.get_by_text("ne correspond pas à celle du bordereau").count() >= 1
    page.screenshot(path=str(SHOTS / "sae-console-transfer-ko.png"), full_page=True)
    _menu(page, "Versements")
    page.screenshot(path=str(SHOTS / "sae-console-transfers.png"), full_page=True)

    # Find the unit, open it, open its child, download the object.
    _menu(page, "Recherche")
    page.get_by_label("Mots du titre").fill("voirie")
    page.get_by_role("button", name="Rechercher").click()
    page.get_by_role("heading", name="Résultats").wait_for()
    page.screenshot(path=str(SHOTS / "sae-console-search.png"), full_page=True)
    page.get_by_role("link", name="Arrêtés de voirie 2024").click()
    page.get_by_role("heading", name="Arrêtés de voirie 2024").wait_for()
    page.get_by_role("link", name="Arrêté n°1 — rue de la Paix").click()
    page.get_by_role("heading", name="Arrêté n°1 — rue de la Paix").wait_for()
    page.get_by_text("Toute la description fournie par le producteur").click()
    page.screenshot(path=str(SHOTS / "sae-console-unit.png"), full_page=True)
    with page.expect_download() as info:
        page.get_by_role("link", name="Télécharger arrêté n°1 (copie).pdf").click()
    download = info.value
    saved = tmp_path / "downloaded.pdf"
    download.save_as(saved)
    assert saved.read_bytes() == PAYLOAD
    assert download.suggested_filename == "arrêté n°1 (copie).pdf"
    with page.expect_download() as info:
        page.get_by_role("link", name="Preuve d'archivage de arrêté n°1 (copie).pdf").click()
    proof = tmp_path / "proof.zip"
    info.value.save_as(proof)
    from sae.journal.bundle import verify_bundle

    report = verify_bundle(proof.read_bytes(), content=saved.read_bytes())
    assert report.valid, report.failure

    # The journal: the latest signed head, and the download is in it.
    _menu(page, "Journal")
    page.get_by_role("heading", name="Dernière tête signée de l'arbre").wait_for()
    root = page.locator("#racine").inner_text()
    assert len(root) == 64
    assert page.get_by_role("cell", name="Consultation d'un objet").count() >= 1
    page.screenshot(path=str(SHOTS / "sae-console-journal.png"), full_page=True)
    page.get_by_role("link", name="Comment vérifier une preuve").click()
    page.screenshot(path=str(SHOTS / "sae-console-verify.png"), full_page=True)

    _menu(page, "Tableau de bord")
    assert page.get_by_text("Répond").count() >= 1
    page.screenshot(path=str(SHOTS / "sae-console-dashboard.png"), full_page=True)
    _menu(page, "Référentiel")
    page.screenshot(path=str(SHOTS / "sae-console-rules.png"), full_page=True)
    _menu(page, "Audits")
    page.get_by_role("button", name="Lancer l'audit").click()
    page.get_by_text("Copies vérifiées").first.wait_for()
    page.screenshot(path=str(SHOTS / "sae-console-audit.png"), full_page=True)

    # Log out: the cookie is gone and pages send back to sign-in.
    page.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_url("**/console/connexion")
    assert not [c for c in context.cookies() if c["name"] == "sae_console"]
    page.goto(served.url + "/console/versements")
    assert "/console/connexion" in page.url
    page.screenshot(path=str(SHOTS / "sae-console-login.png"), full_page=True)
    context.close()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_keyboard_and_error_pages(served: Served, browser: Any) -> None:
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    _login(page, served, _new_token(served, "reader", []))
    # The first Tab reaches the skip link, which leads to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent").strip() == "Aller au contenu"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "contenu"
    # A reader has no transfers: a French refusal, not JSON.
    response = page.goto(served.url + "/console/versements")
    assert response is not None
    assert response.status == 403
    assert page.get_by_role("heading", name="Accès refusé").is_visible()
    page.screenshot(path=str(SHOTS / "sae-console-forbidden.png"), full_page=True)
    response = page.goto(served.url + "/console/unites/inconnue")
    assert response is not None
    assert response.status == 404
    assert page.get_by_role("heading", name="Introuvable").is_visible()
    context.close()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_forged_cross_site_form_is_refused(served: Served, browser: Any, tmp_path: Path) -> None:
    """A page elsewhere posting to the console: SameSite keeps the cookie home, and without
    the CSRF token the server refuses anyway."""
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    _login(page, served, served.admin)
    digest = hashlib.sha256(b"x").hexdigest()
    page.set_content(
        f'<form id="f" method="post" action="{served.url}/console/audits">'
        f'<input name="csrf" value="{digest}"></form>'
    )
    with page.expect_navigation():
        page.evaluate("document.getElementById('f').submit()")
    assert (
        page.get_by_role("heading", name="Formulaire expiré").count()
        + page.get_by_role("heading", name="Connexion").count()
        == 1
    )
    context.close()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_the_archivist_runs_a_destruction_circuit(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    answer = httpx.post(
        f"{served.url}/api/v1/transfers",
        content=sip("MSG-BROWSER-DUE"),
        headers={"Authorization": f"Bearer {served.admin}", "Content-Type": "application/zip"},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    _login(page, served, _new_token(served, "archivist", []))
    _menu(page, "Éliminations")
    page.get_by_label("Service producteur (facultatif)").fill("URBANISME")
    page.get_by_role("button", name="Préparer la liste").click()
    page.get_by_text("La liste est un brouillon").wait_for()
    assert page.get_by_role("link", name="Arrêtés de voirie 2024").count() == 1
    page.screenshot(path=str(SHOTS / "sae-console-disposal-draft.png"), full_page=True)
    listing = page.url
    context.close()

    # Four eyes: another archivist approves the list the first one prepared.
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    _login(page, served, _new_token(served, "archivist", []))
    page.goto(listing)
    page.get_by_label("Commentaire d'approbation (facultatif)").fill("Vu, conforme")
    page.get_by_role("button", name="Approuver la liste").click()
    page.get_by_text("Enregistrer le visa").first.wait_for()
    visa = tmp_path / "visa signé.pdf"
    visa.write_bytes(b"%PDF-1.4\n% visa des Archives departementales\n%%EOF\n")
    page.get_by_label("Bordereau visé et signé (PDF)").set_input_files(str(visa))
    page.get_by_label("Référence de la décision").fill("AD93-2025-042")
    page.get_by_label("Date de la décision").fill("2025-06-15")
    page.screenshot(path=str(SHOTS / "sae-console-disposal-visa.png"), full_page=True)
    page.get_by_role("button", name="Enregistrer le visa").click()
    page.get_by_role("button", name="Exécuter l'élimination").click()
    page.get_by_text("La liste a été exécutée.").wait_for()
    assert page.get_by_role("cell", name="Éliminée").count() >= 1
    page.screenshot(path=str(SHOTS / "sae-console-disposal-executed.png"), full_page=True)
    _menu(page, "Éliminations")
    page.screenshot(path=str(SHOTS / "sae-console-disposals.png"), full_page=True)
    context.close()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_sign_in_with_a_password_and_manage_tokens(served: Served, browser: Any) -> None:
    """A person signs in with a login and a password, makes a token, signs out (the session's
    token revoked); a CSP without inline script holds on every page they saw."""
    from sae.auth import accounts
    from sae.db import make_engine, make_sessionmaker, transaction

    engine = make_engine(served.settings.db_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            accounts.create_user(
                session,
                login="jdupont",
                role="archivist",
                password="cheval-agrafe-pile-42",
                display_name="Jean Dupont",
            )
    finally:
        engine.dispose()
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    violations: list[str] = []
    page.on(
        "console", lambda m: violations.append(m.text) if "Content Security" in m.text else None
    )
    page.goto(served.url + "/")
    page.get_by_label("Identifiant").fill("JDupont")
    page.get_by_label("Mot de passe").fill("pas le bon mot de passe")
    page.get_by_role("button", name="Se connecter", exact=True).click()
    page.get_by_text("Identifiant ou mot de passe incorrect").wait_for()
    page.get_by_label("Identifiant").fill("JDupont")
    page.get_by_label("Mot de passe").fill("cheval-agrafe-pile-42")
    page.get_by_role("button", name="Se connecter", exact=True).click()
    page.wait_for_url(served.url + "/console/")
    assert page.get_by_text("jdupont · Archiviste").count() == 1
    cookie = next(c for c in context.cookies() if c["name"] == "sae_console")
    assert cookie["httpOnly"] is True
    session_secret = cookie["value"]

    _menu(page, "Jetons d'accès")
    page.get_by_text("Session de la console (celle-ci)").wait_for()
    page.get_by_label("Libellé (à quoi il sert)").fill("Export GED")
    page.get_by_role("button", name="Créer le jeton").click()
    page.get_by_text("il ne sera plus jamais affiché").wait_for()
    secret = page.get_by_label("Nouveau jeton").input_value()
    assert secret.startswith("sae_")
    page.screenshot(path=str(SHOTS / "sae-console-tokens.png"), full_page=True)

    page.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_url("**/console/connexion")
    me = httpx.get(
        f"{served.url}/api/v1/auth/me",
        headers={"Authorization": f"Bearer {session_secret}"},
        timeout=30,
    )
    assert me.status_code == 401  # the session's token was revoked at sign-out
    kept = httpx.get(
        f"{served.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {secret}"}, timeout=30
    )
    assert kept.status_code == 200  # the API token made during the session is the user's
    assert violations == []
    context.close()
