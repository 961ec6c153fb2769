"""The offers file: what it accepts, what it refuses (naming the offer), health."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sae.config import load_settings
from sae.storage.errors import (
    JurisdictionRefused,
    MissingCredentials,
    OffersConfigError,
    OfferUnavailable,
    RegionMismatch,
    SingleSiteStrategy,
    UnknownOffer,
)
from sae.storage.filesystem import FilesystemOffer
from sae.storage.offers import (
    OfferSet,
    check_offers,
    load_offers,
    offers_health,
    parse_offers,
)
from sae.storage.s3 import S3Offer
from tests.s3_server import S3Server

ENV = {"A_KEY": "access", "A_SECRET": "secret"}


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "offers.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _two_offers(
    jurisdiction: str = "FR",
    site_b: str = "Centre technique municipal",
    extra: str = "",
    strategy: str = "copies: [site-a, local]",
) -> str:
    return f"""
offers:
  - name: site-a
    kind: s3
    endpoint: http://127.0.0.1:7480
    bucket: sae-site-a
    access_key_env: A_KEY
    secret_key_env: A_SECRET
    region: default
    jurisdiction: {jurisdiction}
    site: "Hôtel de ville, salle serveur"
{extra}
  - name: local
    kind: filesystem
    path: ./offers/local
    jurisdiction: FR
    site: "{site_b}"
strategy:
  {strategy}
"""


def test_default_is_one_local_offer(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    offers = load_offers(settings)
    assert offers.strategy == ["local"]
    local = offers.get("local")
    assert isinstance(local, FilesystemOffer)
    assert local.root == (tmp_path / "data" / "offers" / "local").resolve()
    assert local.jurisdiction == "FR"
    check_offers(offers)
    assert [h.ok for h in offers_health(offers)] == [True]


def test_interface_example_loads(tmp_path: Path) -> None:
    path = _file(tmp_path, _two_offers(strategy="copies: [site-a, local]\n  production: true"))
    settings = load_settings(data_dir=tmp_path / "data", offers_file=path)
    offers = load_offers(settings, ENV)
    assert offers.strategy == ["site-a", "local"]
    assert offers.production is True
    s3, local = offers.copies()
    assert isinstance(s3, S3Offer)
    assert (s3.bucket, s3.region, s3.jurisdiction) == ("sae-site-a", "default", "FR")
    assert isinstance(local, FilesystemOffer)
    assert local.site == "Centre technique municipal"


def test_offer_outside_france_refused(tmp_path: Path) -> None:
    with pytest.raises(JurisdictionRefused) as err:
        parse_offers(_file(tmp_path, _two_offers(jurisdiction="DE")), ENV)
    assert "'site-a'" in str(err.value)
    assert err.value.code == "storage.offers_jurisdiction"


def test_jurisdiction_is_required(tmp_path: Path) -> None:
    text = _two_offers().replace('    jurisdiction: FR\n    site: "Centre', '    site: "Centre')
    with pytest.raises(OffersConfigError, match="offer 'local'.*jurisdiction"):
        parse_offers(_file(tmp_path, text), ENV)


def test_strategy_naming_unknown_offer_refused(tmp_path: Path) -> None:
    with pytest.raises(UnknownOffer, match="'site-b'"):
        parse_offers(_file(tmp_path, _two_offers(strategy="copies: [site-a, site-b]")), ENV)


def test_production_needs_two_sites(tmp_path: Path) -> None:
    text = _two_offers(
        site_b="Hôtel de ville, salle serveur",
        strategy="copies: [site-a, local]\n  production: true",
    )
    with pytest.raises(SingleSiteStrategy, match="site-a, local"):
        parse_offers(_file(tmp_path, text), ENV)
    with pytest.raises(SingleSiteStrategy):
        parse_offers(
            _file(tmp_path, _two_offers(strategy="copies: [local]\n  production: true")), ENV
        )
    # not production: one copy is allowed (the embedded default is exactly that)
    assert parse_offers(_file(tmp_path, _two_offers(strategy="copies: [local]")), ENV).strategy


def test_missing_credentials_named(tmp_path: Path) -> None:
    with pytest.raises(MissingCredentials, match="'site-a'.*A_SECRET"):
        parse_offers(_file(tmp_path, _two_offers()), {"A_KEY": "x"})


def test_unknown_key_is_a_typo_not_ignored(tmp_path: Path) -> None:
    with pytest.raises(OffersConfigError, match="offer 'site-a'.*jurisdicton"):
        parse_offers(_file(tmp_path, _two_offers(extra="    jurisdicton: DE")), ENV)


def test_health_reports_an_unreachable_offer(tmp_path: Path) -> None:
    dead = S3Offer(
        "dead",
        endpoint="http://127.0.0.1:9",
        bucket="sae-b",
        access_key="a",
        secret_key="s",
        region="default",
        site="nowhere",
    )
    local = FilesystemOffer("local", tmp_path / "local", site="here")
    started = time.monotonic()
    report = offers_health([local, dead])
    assert time.monotonic() - started < 30
    assert [(h.name, h.ok) for h in report] == [("local", True), ("dead", False)]
    assert report[1].kind == "s3"
    assert report[1].jurisdiction == "FR"
    assert "dead" in report[1].detail
    with pytest.raises(OffersConfigError, match="'bad'.*bucket name"):
        S3Offer(
            "bad",
            endpoint="http://127.0.0.1:9",
            bucket="B_",
            access_key="a",
            secret_key="s",
            region="default",
        )


@pytest.mark.s3
def test_bucket_region_must_match_declaration(ceph_rgw: S3Server) -> None:
    bucket = ceph_rgw.new_bucket_name()
    good = S3Offer(
        "site-a",
        endpoint=ceph_rgw.endpoint,
        bucket=bucket,
        access_key=ceph_rgw.access_key,
        secret_key=ceph_rgw.secret_key,
        region=ceph_rgw.region,
        create_bucket=True,
    )
    good.check()
    assert good.reported_region() == "default"
    lying = S3Offer(
        "site-b",
        endpoint=ceph_rgw.endpoint,
        bucket=bucket,
        access_key=ceph_rgw.access_key,
        secret_key=ceph_rgw.secret_key,
        region="fr-par",
    )
    with pytest.raises(RegionMismatch) as err:
        lying.check()
    assert "'site-b'" in str(err.value)
    assert "'default'" in str(err.value)
    health = offers_health([lying])
    assert health[0].ok is False
    # at startup: a configuration fault stops the server, an offer that is down does not
    dead = S3Offer(
        "down",
        endpoint="http://127.0.0.1:9",
        bucket="sae-x",
        access_key="a",
        secret_key="s",
        region="default",
    )
    assert len(check_offers(OfferSet({"site-a": good, "down": dead}, ["site-a"]))) == 1
    with pytest.raises(OfferUnavailable):
        check_offers(OfferSet({"down": dead}, ["down"]), require_available=True)
    with pytest.raises(RegionMismatch):
        check_offers(OfferSet({"site-a": good, "site-b": lying}, ["site-a"]))


@pytest.mark.s3
def test_bucket_without_object_lock_refused(ceph_rgw: S3Server) -> None:
    offer = S3Offer(
        "plain",
        endpoint=ceph_rgw.endpoint,
        bucket=ceph_rgw.new_bucket_name(),
        access_key=ceph_rgw.access_key,
        secret_key=ceph_rgw.secret_key,
        region=ceph_rgw.region,
    )
    offer.client.make_bucket(offer.bucket)  # no object lock
    with pytest.raises(OffersConfigError, match="Object Lock"):
        offer.check()
