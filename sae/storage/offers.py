"""The offers file (``SAE_OFFERS_FILE``): which offers exist and where every object goes.

Shape (INTERFACE.md "Storage offers file"; more keys may be added)::

    offers:
      - name: site-a
        kind: s3                       # s3 | filesystem
        endpoint: http://127.0.0.1:7480
        bucket: sae-site-a
        access_key_env: SAE_S3_SITE_A_ACCESS_KEY   # names of variables, never the secrets
        secret_key_env: SAE_S3_SITE_A_SECRET_KEY
        region: default                # must equal the bucket's reported location
        jurisdiction: FR               # ISO 3166 country of the data centre
        site: "Hôtel de ville, salle serveur"
        quarantine_days: 1             # optional: GOVERNANCE for N days, then COMPLIANCE
        create_bucket: false           # optional: create the Object Lock bucket if missing
      - name: local
        kind: filesystem
        path: ./sae-data/offers/local  # relative paths are relative to the working directory
        jurisdiction: FR
        site: "Centre technique municipal"
    strategy:
      copies: [site-a, local]          # every object is written to each offer named here
      production: true                 # optional: then copies must span two distinct sites

Loading refuses, naming the offer: a jurisdiction other than FR (public archives stay on
national territory), a strategy naming an undeclared offer, a production strategy on fewer
than two distinct sites, an unset credential variable, unknown keys (a typo must not silently
drop a setting). Reaching the servers is left to :func:`check_offers` (startup) and
:func:`offers_health` (``/health``), which also compare each bucket's reported location with
the declared region.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sae.config import Settings
from sae.storage.base import StorageOffer
from sae.storage.errors import (
    JurisdictionRefused,
    MissingCredentials,
    OffersConfigError,
    SingleSiteStrategy,
    StorageError,
    UnknownOffer,
)
from sae.storage.filesystem import FilesystemOffer

#: The only jurisdiction public archives may be stored in (Code du patrimoine, L212-4 and the
#: circulaire on cloud storage of public archives).
ALLOWED_JURISDICTION = "FR"
DEFAULT_OFFER = "local"


#: Copies start GOVERNANCE-locked for this many days, then are sealed in COMPLIANCE. Without
#: that window a refused transfer could not remove the copies it wrote seconds before (COMPLIANCE
#: forbids it), and a deposit made by mistake could never be withdrawn.
DEFAULT_QUARANTINE_DAYS = 1


class OfferConfig(BaseModel):
    """One offer as declared in the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    kind: Literal["s3", "filesystem"]
    jurisdiction: str
    site: str = ""
    region: str | None = None
    quarantine_days: int = Field(default=DEFAULT_QUARANTINE_DAYS, ge=0, le=365)
    # filesystem
    path: str | None = None
    # s3
    endpoint: str | None = None
    bucket: str | None = None
    access_key_env: str | None = None
    secret_key_env: str | None = None
    create_bucket: bool = False


class StrategyConfig(BaseModel):
    """Where every object is written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    copies: list[str] = Field(min_length=1)
    production: bool = False


class OffersFile(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    offers: list[OfferConfig] = Field(min_length=1)
    strategy: StrategyConfig


@dataclass
class OfferSet:
    """The declared offers (by name) and the strategy (names, in write order)."""

    offers: dict[str, StorageOffer]
    strategy: list[str]
    production: bool = False
    source: Path | None = field(default=None)

    def copies(self) -> list[StorageOffer]:
        """The offers every object is written to, first one first."""
        return [self.offers[name] for name in self.strategy]

    def get(self, name: str) -> StorageOffer:
        """The offer called ``name``; :class:`UnknownOffer` otherwise."""
        try:
            return self.offers[name]
        except KeyError:
            raise UnknownOffer(name, list(self.offers)) from None


@dataclass(frozen=True)
class OfferHealth:
    """One line of ``/health`` for one offer."""

    name: str
    kind: str
    jurisdiction: str
    site: str
    ok: bool
    detail: str


def default_offers(settings: Settings) -> OfferSet:
    """The embedded default: one filesystem offer ``local`` in ``$SAE_DATA_DIR/offers/local``."""
    offer = FilesystemOffer(
        DEFAULT_OFFER,
        settings.data_dir / "offers" / "local",
        jurisdiction=ALLOWED_JURISDICTION,
        site="local",
        quarantine_days=DEFAULT_QUARANTINE_DAYS,
    )
    return OfferSet({DEFAULT_OFFER: offer}, [DEFAULT_OFFER], production=False)


def load_offers(settings: Settings, environ: Mapping[str, str] | None = None) -> OfferSet:
    """Build the offers from ``settings.offers_file`` (or the embedded default), refusing a
    configuration that breaks the rules above. Does not contact any server."""
    if settings.offers_file is None:
        return default_offers(settings)
    return parse_offers(Path(settings.offers_file), environ)


def parse_offers(path: Path, environ: Mapping[str, str] | None = None) -> OfferSet:
    """Load and validate one offers file."""
    env = os.environ if environ is None else environ
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise OffersConfigError(f"offers file {path}: {exc}") from exc
    config = _validate(path, raw)
    names = [offer.name for offer in config.offers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise OffersConfigError(
            f"offers file {path}: offer {duplicates[0]!r} declared twice", offer=duplicates[0]
        )
    for offer in config.offers:
        if offer.jurisdiction.strip().upper() != ALLOWED_JURISDICTION:
            raise JurisdictionRefused(offer.name, offer.jurisdiction)
    declared = {offer.name: offer for offer in config.offers}
    for name in config.strategy.copies:
        if name not in declared:
            raise UnknownOffer(name, names)
    if len(set(config.strategy.copies)) != len(config.strategy.copies):
        raise OffersConfigError(f"offers file {path}: the strategy names an offer twice")
    if config.strategy.production:
        chosen = [declared[name] for name in config.strategy.copies]
        sites = [o.site.strip().casefold() for o in chosen if o.site.strip()]
        if len(set(sites)) < 2:
            raise SingleSiteStrategy([o.name for o in chosen], sites)
    offers = {offer.name: _build(offer, env) for offer in config.offers}
    return OfferSet(offers, list(config.strategy.copies), config.strategy.production, path)


def _validate(path: Path, raw: object) -> OffersFile:
    try:
        return OffersFile.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = list(err["loc"])
            where = ".".join(str(p) for p in loc)
            # Name the offer rather than its index: "offers.1.kind" says less than "offer 'b'".
            if len(loc) >= 2 and loc[0] == "offers" and isinstance(loc[1], int):
                offers = raw.get("offers") if isinstance(raw, dict) else None
                if isinstance(offers, list) and loc[1] < len(offers):
                    item = offers[loc[1]]
                    label = item.get("name") if isinstance(item, dict) else None
                    where = f"offer {label or loc[1]!r}: " + ".".join(str(p) for p in loc[2:])
            lines.append(f"{where}: {err['msg']}")
        raise OffersConfigError(f"offers file {path} refused: " + "; ".join(lines)) from None


def _need(offer: OfferConfig, field_name: str, value: str | None) -> str:
    if not value:
        raise OffersConfigError(
            f"offer {offer.name!r} ({offer.kind}) needs {field_name!r}", offer=offer.name
        )
    return value


def _secret(offer: OfferConfig, variable: str, env: Mapping[str, str]) -> str:
    value = env.get(variable)
    if not value:
        raise MissingCredentials(offer.name, variable)
    return value


def _build(offer: OfferConfig, env: Mapping[str, str]) -> StorageOffer:
    if offer.kind == "filesystem":
        path = Path(_need(offer, "path", offer.path)).expanduser()
        return FilesystemOffer(
            offer.name,
            path,
            jurisdiction=offer.jurisdiction.strip().upper(),
            site=offer.site,
            region=offer.region,
            quarantine_days=offer.quarantine_days,
        )
    from sae.storage.s3 import S3Offer  # only S3 deployments need the minio client loaded

    return S3Offer(
        offer.name,
        endpoint=_need(offer, "endpoint", offer.endpoint),
        bucket=_need(offer, "bucket", offer.bucket),
        access_key=_secret(offer, _need(offer, "access_key_env", offer.access_key_env), env),
        secret_key=_secret(offer, _need(offer, "secret_key_env", offer.secret_key_env), env),
        region=_need(offer, "region", offer.region),
        jurisdiction=offer.jurisdiction.strip().upper(),
        site=offer.site,
        quarantine_days=offer.quarantine_days,
        create_bucket=offer.create_bucket,
    )


def check_offers(offers: OfferSet, *, require_available: bool = False) -> list[str]:
    """Startup check: every offer is configured as declared (bucket, Object Lock, region), and
    an S3 offer's user holds the permissions its configuration needs beyond reading and writing
    (``S3Offer.check_permissions``: the governance bypass of a quarantine).

    A configuration fault (:class:`OffersConfigError`, e.g. :class:`RegionMismatch` or a bucket
    without Object Lock) is raised, so that a misconfigured server refuses to start rather than
    archive to the wrong place. An offer that merely does not answer is raised only with
    ``require_available``; otherwise its message is returned (``/health`` will report it), so
    that a site being down does not stop the other from serving reads.
    """
    unavailable = []
    for offer in offers.offers.values():
        try:
            offer.check()
            if offer.kind == "s3":
                from sae.storage.s3 import S3Offer  # loaded by S3 deployments only

                if isinstance(offer, S3Offer):
                    offer.check_permissions()
        except OffersConfigError:
            raise
        except StorageError as exc:
            if require_available:
                raise
            unavailable.append(exc.detail)
    return unavailable


def offers_health(offers: OfferSet | Iterable[StorageOffer]) -> list[OfferHealth]:
    """One :class:`OfferHealth` per offer, for ``GET /health`` (never raises)."""
    items = offers.offers.values() if isinstance(offers, OfferSet) else offers
    report = []
    for offer in items:
        try:
            offer.check()
            ok, detail = True, "ok"
        except StorageError as exc:
            ok, detail = False, exc.detail
        except Exception as exc:  # a health check reports, it does not crash the endpoint
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        report.append(
            OfferHealth(offer.name, offer.kind, offer.jurisdiction, offer.site, ok, detail)
        )
    return report
