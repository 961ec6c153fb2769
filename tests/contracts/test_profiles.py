"""Real archival profiles (``$SAE_SHARED_DIR/seda-profiles``, read in place): each accepts its
conforming manifest and refuses the broken one at the line the README names; every RelaxNG
profile is taken by the API; what is not a self-contained RelaxNG grammar is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import seda
from tests.conftest import SHARED, Api, require
from tests.contracts.helpers import add_profile

PROFILES = Path(os.environ.get("SAE_SHARED_DIR") or SHARED) / "seda-profiles"

#: (profile, conforming manifest, broken manifest, the line of the broken one's fault)
PAIRS = [
    (
        "seda2.1-vitam-Profil20.rng",
        "seda2.1-vitam-Profil20-manifest_ok.xml",
        "seda2.1-vitam-Profil20-manifest_ko.xml",
        "line 4",
        "Comment",
    ),
    (
        "seda2.1-itests-profil_ok.rng",
        "seda2.1-sedatools-OK_468-manifest.xml",
        "seda2.1-sedatools-KO_468-manifest.xml",
        "line 70",
        "Title",
    ),
]


@pytest.fixture(scope="module")
def profiles_dir() -> Path:
    require((PROFILES / "README.md").is_file(), f"{PROFILES} (shared archival profiles) not found")
    return PROFILES


@pytest.mark.parametrize(("profile", "ok", "ko", "line", "element"), PAIRS)
def test_each_profile_accepts_its_sample_and_refuses_the_broken_one(
    profiles_dir: Path, profile: str, ok: str, ko: str, line: str, element: str
) -> None:
    compiled = seda.RelaxNGProfile((profiles_dir / profile).read_bytes())
    assert compiled.validate((profiles_dir / ok).read_bytes()) == []
    faults = compiled.validate((profiles_dir / ko).read_bytes())
    assert [f.where for f in faults] == [line]
    assert faults[0].code == seda.PROFILE_NOT_MET
    assert f"Element {element} failed to validate content" in faults[0].message
    # A profile does not accept the other profile's manifest.
    other = next(p for p in PAIRS if p[0] != profile)
    assert compiled.validate((profiles_dir / other[1]).read_bytes()) != []


def test_every_shared_relaxng_profile_is_taken_by_the_api(api: Api, profiles_dir: Path) -> None:
    names = sorted(p.name for p in profiles_dir.glob("*.rng"))
    assert len(names) == 5
    for number, name in enumerate(names):
        data = (profiles_dir / name).read_bytes()
        response = add_profile(api, f"P-{number}", data, name=name, filename=name)
        assert response.status_code == 201, (name, response.text)
        body = response.json()
        assert body["size"] == len(data)
        document = api.client.get(body["document_url"], headers=api.auth())
        assert document.content == data
    listed = api.client.get("/api/v1/profiles", headers=api.auth()).json()
    assert [p["filename"] for p in listed] == names


def test_what_is_not_a_self_contained_relaxng_grammar_is_refused(
    api: Api, profiles_dir: Path
) -> None:
    xsd = add_profile(api, "P-XSD", (profiles_dir / "seda2.1-vitamui-profile.xsd").read_bytes())
    assert xsd.status_code == 422
    assert xsd.json()["code"] == "profiles.invalid"
    rng = 'xmlns="http://relaxng.org/ns/structure/1.0"'
    for body in (
        f'<grammar {rng}><include href="/etc/passwd"/></grammar>',
        f'<grammar {rng}><start><externalRef href="http://example.org/x.rng"/></start></grammar>',
        f'<!DOCTYPE g [<!ENTITY e SYSTEM "file:///etc/passwd">]><element name="a" {rng}>'
        "<value>&e;</value></element>",
        f'<grammar {rng}><start><element name="a"><ref name="missing"/></element></start>'
        "</grammar>",
        "pas du XML",
    ):
        response = add_profile(api, "P-BAD", body.encode())
        assert response.status_code == 422, (body, response.text)
        assert response.json()["code"] == "profiles.invalid", body
    assert api.client.get("/api/v1/profiles", headers=api.auth()).json() == []
    # The same id twice: 409, unless replaced.
    good = (profiles_dir / "seda2.1-vitam-Profil20.rng").read_bytes()
    assert add_profile(api, "P-1", good).status_code == 201
    assert add_profile(api, "P-1", good).json()["code"] == "profiles.exists"
    assert add_profile(api, "P-1", good, replace="true").status_code == 201


def test_a_profile_over_the_limit_is_refused(api: Api) -> None:
    from sae.contracts.service import MAX_PROFILE_BYTES

    response = add_profile(api, "P-BIG", b"<a>" + b" " * MAX_PROFILE_BYTES + b"</a>")
    assert response.status_code == 413
    assert response.json()["code"] == "profiles.too_large"
