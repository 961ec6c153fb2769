"""The one settings object.

Every setting comes from an environment variable prefixed ``SAE_`` (or a ``.env`` file, or an
optional ``sae.toml``). A bad configuration is refused when the settings are built, with a message
naming the variable, so that a misconfigured server never starts half-working.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url

from sae.auth.groups import GroupRole, check_mapping


def _bundled_xsd_dir() -> Path:
    """The official SEDA schemas shipped in the ``seda`` package: an installation validates
    against them with no setting (``SAE_SEDA_XSD_DIR`` points elsewhere when wanted)."""
    import seda  # imported where used, as in _known_tolerances below

    return seda.BUNDLED_XSD_DIR


#: What ``SAE_FINDING_AID_FIELDS`` may name: the descriptive fields that a finding aid may show
#: of a unit not yet communicable (``sae.catalog.service.finding_aid_view``). Titles and
#: descriptions are not among them: they are what the law protects ("Dossier d'aide sociale de
#: M. X"), and the full-text index is built from them.
FINDING_AID_FIELDS = ("identifier", "dates", "producer", "level")


class Settings(BaseSettings):
    """SAE configuration (environment variables ``SAE_*``)."""

    model_config = SettingsConfigDict(
        env_prefix="SAE_",
        env_file=".env",
        extra="ignore",
        toml_file="sae.toml",
    )

    data_dir: Path = Field(default=Path("./sae-data"), description="Embedded-default state.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///$SAE_DATA_DIR/sae.db."
    )
    database_pool_size: int = Field(
        default=16,
        ge=1,
        le=500,
        description=(
            "Connections a process keeps open to the database once it has needed them; a burst "
            "opens up to half as many more, closed once returned."
        ),
    )
    offers_file: Path | None = Field(
        default=None, description="YAML file declaring the storage offers and the strategy."
    )
    witnesses_file: Path | None = Field(
        default=None,
        description="YAML file naming the witnesses that co-sign tree heads, and the quorum.",
    )
    auto_migrate: bool = Field(
        default=True,
        description=(
            "Upgrade the database schema at start (logged, under the migration lock). Off (the "
            "production example): a process on an outdated schema refuses to start and names "
            "`sae migrate`, run deliberately once."
        ),
    )
    tsa_url: str | None = Field(default=None, description="External RFC 3161 TSA; unset: built-in.")
    tsa_ca_file: Path | None = Field(
        default=None, description="PEM trust anchor(s) of the external TSA (with SAE_TSA_URL)."
    )
    tsa_username: str | None = Field(
        default=None, description="HTTP Basic user name for the external TSA (with the password)."
    )
    tsa_password: SecretStr | None = Field(
        default=None, description="HTTP Basic password for the external TSA (never logged)."
    )
    tsa_bearer_token: SecretStr | None = Field(
        default=None, description="Bearer token sent to the external TSA (never logged)."
    )
    tsa_client_cert: Path | None = Field(
        default=None, description="PEM client certificate for the external TSA (TLS)."
    )
    tsa_client_key: Path | None = Field(
        default=None, description="PEM private key of SAE_TSA_CLIENT_CERT (mode 0600)."
    )
    tsa_policy_oid: str | None = Field(
        default=None,
        description="The TSA policy OID the tokens must carry; a token under another is refused.",
    )
    tsa_chain_file: Path | None = Field(
        default=None,
        description="PEM intermediates of the external TSA, for tokens that do not carry them.",
    )
    tsa_check_minutes: float = Field(
        default=15.0,
        gt=0,
        description="/health asks the TSA for a token at most this often (a seal counts).",
    )
    journal_key_fingerprint: str | None = Field(
        default=None,
        description=(
            "SHA-256 (hex) of the journal key's SubjectPublicKeyInfo: the key at start must be "
            "it, and `sae journal verify` takes it as the first key of the history."
        ),
    )
    seda_xsd_dir: Path | None = Field(
        default_factory=_bundled_xsd_dir,
        description=(
            "Folder with the official SEDA XSDs (2.1/, 2.2/, 2.3/); default: the copy shipped "
            "in the seda package. None (from code only) leaves the XSD layer out."
        ),
    )
    seda_tolerances: list[str] = Field(
        default_factory=list,
        description="SEDA deviations accepted with a warning (see docs/seda.md).",
    )
    # Limits that stop hostile SIPs before they cost anything.
    max_sip_bytes: int = Field(default=20 * 1024**3, gt=0, description="Upload size limit.")
    max_zip_entries: int = Field(default=20_000, gt=0)
    max_uncompressed_bytes: int = Field(default=50 * 1024**3, gt=0)
    max_compression_ratio: float = Field(default=200.0, gt=1)
    max_manifest_bytes: int = Field(default=64 * 1024**2, gt=0)
    # Pastell's as@lae connector (docs/pastell.md).
    pastell_prefix: str = Field(
        default="/restservices",
        description="Where the Pastell-compatible routes are served (the connector's URL path).",
    )
    pastell_chunk_max_bytes: int = Field(
        default=16 * 1024**2, gt=0, description="Largest chunk of a chunked Pastell upload."
    )
    pastell_chunk_max_count: int = Field(
        default=20_000, gt=0, description="Most chunks in one chunked Pastell upload."
    )
    pastell_chunk_idle_seconds: int = Field(
        default=3600, gt=0, description="A chunked upload expires this long after its last chunk."
    )
    pastell_retry_seconds: int = Field(
        default=60, gt=0, description="How often the Pastell worker looks for pending transfers."
    )
    ingest_threads: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Files of one transfer stored at once (reading, hashing and writing).",
    )
    clamd_socket: str | None = Field(
        default=None,
        description=(
            "clamd's socket for the antivirus at ingest: a Unix socket's path or host:port. "
            "Unset: no scan (the embedded default)."
        ),
    )
    clamd_required: bool | None = Field(
        default=None,
        description=(
            "Refuse (503) a SIP clamd could not scan, instead of accepting it with a warning "
            "in its ATR. Unset: required when SAE_CLAMD_SOCKET is set. Production: 1."
        ),
    )
    clamd_timeout_seconds: float = Field(
        default=120.0, gt=0, description="How long clamd may take to answer one file."
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, gt=0, lt=65536)
    workers: int = Field(
        default=1,
        ge=1,
        le=32,
        description=(
            "Server processes (`sae serve`). One Python process uses one core at most: on a "
            "busy server, one per core. On SQLite they take turns to write (one writer at a "
            "time), which the group commit keeps short."
        ),
    )
    origin: str = Field(default="sae.local", description="Journal checkpoint origin line.")
    seal_interval_minutes: int = Field(default=10, gt=0)
    seal_spacing_seconds: float = Field(
        default=1.0,
        ge=0,
        le=3600,
        description=(
            "After a head is sealed on request, the next one waits at least this long: a burst "
            "of transfers is covered by one head (one signature, one time-stamp) per interval."
        ),
    )
    audit_interval_hours: float = Field(
        default=24.0,
        ge=0,
        description="A scheduled fixity audit starts this often (0: only on request).",
    )
    ocr: bool = Field(
        default=False,
        description=(
            "OCR archived scans (TIFF, JPEG, PNG, image-only PDF) in the background into a "
            "searchable PDF/A-2b added to their object group (ocrmypdf and Tesseract installed)."
        ),
    )
    text_wait_minutes: float = Field(
        default=10.0,
        ge=0,
        description=(
            "While deposits arrive (one received in the last seconds), the background reader "
            "of archived PDFs' text leaves the processors to them and reads only the PDFs "
            "waiting for this long; the others once deposits pause (0: read every PDF at once)."
        ),
    )
    ocr_workers: int = Field(
        default=1, ge=1, le=32, description="Scans OCRed at once (SAE_OCR), one core each."
    )
    ocr_languages: str = Field(
        default="fra",
        pattern=r"^[a-z_]{3,16}(\+[a-z_]{3,16}){0,7}$",
        description="Tesseract languages of SAE_OCR, e.g. fra or fra+eng (their packages).",
    )
    drill_interval_days: float = Field(
        default=30.0,
        ge=0,
        description=(
            "A restore drill (`sae drill`: the catalogue rebuilt from each offer and compared "
            "with the live one) runs in the background this often (0: only by hand)."
        ),
    )
    audit_sample_rate: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Share of the objects each scheduled audit re-reads on every offer.",
    )

    # Operations: logs, metrics, alerts (docs/operations.md).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level written to the log (stderr)."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: one readable line per record; json: one JSON object per line.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description=(
            "Bearer token a Prometheus server sends to GET /metrics (an admin token works "
            "too); never logged."
        ),
    )
    alert_smtp_host: str | None = Field(default=None, description="SMTP server for alert mail.")
    alert_smtp_port: int | None = Field(
        default=None, gt=0, lt=65536, description="Default 465 with ssl, else 587 (25: none)."
    )
    alert_smtp_security: Literal["starttls", "ssl", "none"] = Field(
        default="starttls", description="How the SMTP connection is protected."
    )
    alert_smtp_ca_file: Path | None = Field(
        default=None,
        description="PEM CA(s) of the SMTP server's certificate (an internal CA); default: system.",
    )
    alert_smtp_user: str | None = Field(default=None, description="SMTP login (with password).")
    alert_smtp_password: SecretStr | None = Field(
        default=None, description="SMTP password (never logged)."
    )
    alert_smtp_timeout_seconds: float = Field(default=20.0, gt=0)
    alert_from: str | None = Field(default=None, description="From: address of alert mail.")
    alert_to: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Recipients of alert mail (comma-separated)."
    )
    finding_aid_fields: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "What readers see of a unit not yet communicable (Code du patrimoine L213-2), "
            "comma-separated among identifier, dates, producer, level. Empty (the default): "
            "such a unit is invisible to them, as if it did not exist."
        ),
    )
    disposal_four_eyes: bool = Field(
        default=True,
        description=(
            "The archivist who approves a disposal list cannot be the one who built it. Off "
            "only for a single-archivist commune: every destruction certificate then says so."
        ),
    )
    alert_webhook_url: str | None = Field(
        default=None, description="URL that receives each alert as JSON (POST)."
    )
    alert_webhook_secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key: the webhook's body is signed in X-SAE-Signature.",
    )
    alert_repeat_hours: float = Field(
        default=24.0,
        gt=0,
        description="An alert still standing is sent again after this long (a reminder).",
    )
    alert_check_seconds: float = Field(
        default=60.0, gt=0, description="How often the background worker looks for alerts."
    )
    quarantine_overdue_hours: float = Field(
        default=24.0,
        gt=0,
        description="A copy still in quarantine this long after its window ended is overdue.",
    )

    # Sign-in with the commune's directory (docs/sso.md): LDAP / Active Directory, OpenID
    # Connect, and which of the directory's groups get which role.
    group_roles: dict[str, GroupRole] = Field(
        default_factory=dict,
        description=(
            'Group → role mapping, JSON: {"CN=SAE-Archivistes,OU=Groupes,DC=mairie,DC=local": '
            '{"role": "archivist"}, "depot-urbanisme": {"role": "depositor", "producers": '
            '["URBA"]}}. A key with "=" is a DN, any other a group name.'
        ),
    )
    group_roles_file: Path | None = Field(
        default=None, description="YAML file with more of the same mapping (merged)."
    )
    ldap_url: str | None = Field(
        default=None,
        description="ldaps://host:636, or ldap://host:389 with SAE_LDAP_START_TLS; unset: no LDAP.",
    )
    ldap_start_tls: bool = Field(default=False, description="StartTLS on an ldap:// URL.")
    ldap_ca_file: Path | None = Field(
        default=None, description="PEM CA(s) of the directory's certificate; default: system."
    )
    ldap_allow_plaintext: bool = Field(
        default=False,
        description=(
            "Let passwords cross the network unencrypted (ldap:// without StartTLS): tests and "
            "a directory on the same machine only."
        ),
    )
    ldap_bind_dn_template: str | None = Field(
        default=None,
        description=(
            "Direct bind: the user's DN, {login} standing for the login (escaped), e.g. "
            "uid={login},ou=people,dc=mairie,dc=fr, or {login}@mairie.local for AD."
        ),
    )
    ldap_service_dn: str | None = Field(
        default=None, description="Search then bind: the service account that searches."
    )
    ldap_service_password: SecretStr | None = Field(
        default=None, description="The service account's password (never logged)."
    )
    ldap_user_base: str | None = Field(
        default=None, description="Where users are searched (search then bind, group reads)."
    )
    ldap_user_filter: str = Field(
        default="(uid={login})",
        description="Filter finding the user, {login} escaped; AD: (sAMAccountName={login}).",
    )
    ldap_group_base: str | None = Field(
        default=None,
        description="Groups searched here (SAE_LDAP_GROUP_FILTER); unset: the memberOf attribute.",
    )
    ldap_group_filter: str = Field(
        default="(|(member={dn})(uniqueMember={dn}))",
        description=(
            "Filter finding the user's groups, {dn} the user's DN (escaped), {login} the login; "
            "AD with nested groups: (member:1.2.840.113556.1.4.1941:={dn})."
        ),
    )
    ldap_display_name_attribute: str = Field(default="displayName")
    ldap_email_attribute: str = Field(default="mail")
    ldap_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="Connection and answer timeout of the directory."
    )
    oidc_issuer: str | None = Field(
        default=None,
        description="The provider's issuer URL (discovery at /.well-known/openid-configuration).",
    )
    oidc_client_id: str | None = Field(default=None, description="SAE's client id there.")
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="SAE's client secret (confidential client; never logged)."
    )
    oidc_redirect_url: str | None = Field(
        default=None,
        description=(
            "The callback registered at the provider, https://sae.example/console/login/oidc/"
            "callback; unset: built from the request."
        ),
    )
    oidc_scopes: str = Field(default="openid profile email", description="Scopes asked for.")
    oidc_groups_claim: str = Field(
        default="groups", description="The ID token or userinfo claim listing the groups."
    )
    oidc_login_claim: str = Field(
        default="preferred_username", description="The claim used as the login (else sub)."
    )
    oidc_algorithms: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["RS256", "PS256", "ES256"],
        description="ID token signature algorithms accepted (comma-separated).",
    )
    oidc_button_label: str = Field(
        default="Se connecter avec le compte de la commune",
        description="The sign-in page's button.",
    )
    oidc_ca_file: Path | None = Field(
        default=None, description="PEM CA(s) of the provider's certificate; default: system."
    )
    oidc_allow_http: bool = Field(
        default=False, description="Accept an http:// issuer (tests and localhost only)."
    )
    oidc_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Accounts and sign-in (docs/accounts.md).
    console_session_hours: float = Field(
        default=8.0,
        gt=0,
        le=24 * 31,
        description="A console session ends this long after its sign-in, whatever its use.",
    )
    console_idle_minutes: int = Field(
        default=60,
        ge=5,
        description="A console session left unused this long ends (to the minute).",
    )
    sign_in_window_minutes: int = Field(
        default=15,
        ge=1,
        description="The window over which refused sign-ins are counted for the rate limit.",
    )
    sign_in_max_per_account: int = Field(
        default=5,
        ge=1,
        description="Refused sign-ins for one login, within the window, before it waits.",
    )
    sign_in_max_per_address: int = Field(
        default=20,
        ge=1,
        description="Refused sign-ins from one client address, within the window, before it waits.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Web origins (https://ged.mairie.fr) whose pages may call the API from a browser "
            "(comma-separated); empty: none (CORS closed)."
        ),
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("pastell_prefix")
    @classmethod
    def _pastell_prefix(cls, value: str) -> str:
        value = "/" + value.strip().strip("/")
        if value == "/" or any(not part for part in value[1:].split("/")):
            raise ValueError("SAE_PASTELL_PREFIX must be a path such as /restservices")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError(
                "SAE_DATABASE_URL must be a sqlite:// or postgresql:// SQLAlchemy URL, got "
                f"{value.split(':', 1)[0]!r}"
            )
        return value

    @field_validator("journal_key_fingerprint")
    @classmethod
    def _fingerprint_hex(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        normal = value.replace(":", "").strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", normal):
            raise ValueError("must be a SHA-256 fingerprint: 64 hex digits (colons allowed)")
        return normal

    @field_validator("tsa_policy_oid")
    @classmethod
    def _policy_oid(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not re.fullmatch(r"[0-2](\.(0|[1-9][0-9]*))+", value):
            raise ValueError(f"{value!r} is not a dotted OID (e.g. 1.2.3.4)")
        return value

    @field_validator(
        "tsa_client_cert",
        "tsa_client_key",
        "tsa_chain_file",
        "alert_smtp_ca_file",
        "ldap_ca_file",
        "oidc_ca_file",
        "group_roles_file",
    )
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser().resolve()
        if not value.is_file():
            raise ValueError(f"{value} does not exist")
        return value

    @field_validator("seda_xsd_dir")
    @classmethod
    def _xsd_dir_exists(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser().resolve()
        if not (value / "2.2" / "seda-2.2-main.xsd").is_file():
            raise ValueError(
                f"SAE_SEDA_XSD_DIR={value} does not hold the official SEDA schemas "
                "(expected 2.1/, 2.2/, 2.3/ with seda-<v>-main.xsd)"
            )
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        if isinstance(value, str):  # the environment's form: a comma-separated list
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for origin in value:
                if origin == "*" or not str(origin).startswith(("http://", "https://")):
                    raise ValueError(f"an origin is http(s)://host[:port], not {origin!r}")
            return [str(origin).rstrip("/") for origin in value]
        return value

    @field_validator("alert_to", mode="before")
    @classmethod
    def _recipients(cls, value: object) -> object:
        if isinstance(value, str):  # the environment's form: a comma-separated list
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("finding_aid_fields", mode="before")
    @classmethod
    def _finding_aid_fields(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            unknown = [v for v in value if v not in FINDING_AID_FIELDS]
            if unknown:
                raise ValueError(
                    f"unknown field {unknown[0]!r}: choose among {', '.join(FINDING_AID_FIELDS)}"
                )
            return sorted(set(value))
        return value

    @field_validator("alert_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("seda_tolerances")
    @classmethod
    def _known_tolerances(cls, value: list[str]) -> list[str]:
        import seda

        unknown = [name for name in value if name not in seda.TOLERANCES]
        if unknown:
            raise ValueError(
                f"unknown SEDA tolerance(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(seda.TOLERANCES))}"
            )
        return value

    @field_validator("offers_file")
    @classmethod
    def _offers_file_exists(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser().resolve()
        if not value.is_file():
            raise ValueError(f"SAE_OFFERS_FILE={value} does not exist")
        return value

    @field_validator("witnesses_file")
    @classmethod
    def _witnesses_file_exists(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser().resolve()
        if not value.is_file():
            raise ValueError(f"SAE_WITNESSES_FILE={value} does not exist")
        return value

    @model_validator(mode="after")
    def _tsa_authentication(self) -> Settings:
        if (self.tsa_username is None) != (self.tsa_password is None):
            raise ValueError("SAE_TSA_USERNAME and SAE_TSA_PASSWORD go together")
        if (self.tsa_client_cert is None) != (self.tsa_client_key is None):
            raise ValueError("SAE_TSA_CLIENT_CERT and SAE_TSA_CLIENT_KEY go together")
        if self.tsa_username is not None and self.tsa_bearer_token is not None:
            raise ValueError("SAE_TSA_USERNAME and SAE_TSA_BEARER_TOKEN: choose one")
        return self

    @model_validator(mode="after")
    def _alert_mail(self) -> Settings:
        if self.alert_smtp_host is not None and not (self.alert_from and self.alert_to):
            raise ValueError("SAE_ALERT_SMTP_HOST needs SAE_ALERT_FROM and SAE_ALERT_TO")
        if (self.alert_smtp_user is None) != (self.alert_smtp_password is None):
            raise ValueError("SAE_ALERT_SMTP_USER and SAE_ALERT_SMTP_PASSWORD go together")
        if self.alert_webhook_secret is not None and self.alert_webhook_url is None:
            raise ValueError("SAE_ALERT_WEBHOOK_SECRET needs SAE_ALERT_WEBHOOK_URL")
        return self

    @field_validator("oidc_algorithms", mode="before")
    @classmethod
    def _algorithms(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("oidc_algorithms")
    @classmethod
    def _asymmetric_algorithms(cls, value: list[str]) -> list[str]:
        # The ID token must be signed by the provider's key, published in its JWKS: "none" and
        # HMAC (a signature anyone holding the client secret could make) are never accepted.
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"}
        allowed |= {"ES512", "EdDSA"}
        wrong = [alg for alg in value if alg not in allowed]
        if wrong or not value:
            raise ValueError(
                f"refused algorithm(s) {', '.join(wrong) or '(none)'}; allowed: "
                f"{', '.join(sorted(allowed))}"
            )
        return value

    @model_validator(mode="after")
    def _group_mapping(self) -> Settings:
        if self.group_roles_file is not None:
            from sae.auth.groups import load_mapping_file

            extra = load_mapping_file(self.group_roles_file)
            both = sorted(set(extra) & set(self.group_roles))
            if both:
                raise ValueError(
                    f"SAE_GROUP_ROLES and SAE_GROUP_ROLES_FILE both map {', '.join(both)}"
                )
            self.group_roles = {**self.group_roles, **extra}
        check_mapping(self.group_roles)
        if (self.ldap_url or self.oidc_issuer) and not self.group_roles:
            raise ValueError(
                "SAE_LDAP_URL / SAE_OIDC_ISSUER need SAE_GROUP_ROLES (or SAE_GROUP_ROLES_FILE): "
                "without it no one could sign in"
            )
        return self

    @model_validator(mode="after")
    def _ldap(self) -> Settings:
        if self.ldap_url is None or self.ldap_url == "":
            self.ldap_url = None
            return self
        if not re.fullmatch(r"ldaps?://[^/\s]+/?", self.ldap_url):
            raise ValueError("SAE_LDAP_URL must be ldap://host[:port] or ldaps://host[:port]")
        if self.ldap_url.startswith("ldaps://") and self.ldap_start_tls:
            raise ValueError("SAE_LDAP_START_TLS goes with ldap://, not ldaps:// (already TLS)")
        if (
            self.ldap_url.startswith("ldap://")
            and not self.ldap_start_tls
            and not self.ldap_allow_plaintext
        ):
            raise ValueError(
                "SAE_LDAP_URL=ldap:// would send passwords in clear: use ldaps://, or "
                "SAE_LDAP_START_TLS=true (SAE_LDAP_ALLOW_PLAINTEXT=true only for tests)"
            )
        template = self.ldap_bind_dn_template
        service = self.ldap_service_dn
        if (template is None) == (service is None):
            raise ValueError(
                "SAE_LDAP_URL needs exactly one of SAE_LDAP_BIND_DN_TEMPLATE (direct bind) "
                "and SAE_LDAP_SERVICE_DN (search then bind)"
            )
        if template is not None and "{login}" not in template:
            raise ValueError("SAE_LDAP_BIND_DN_TEMPLATE must contain {login}")
        if service is not None:
            if self.ldap_service_password is None:
                raise ValueError("SAE_LDAP_SERVICE_DN needs SAE_LDAP_SERVICE_PASSWORD")
            if not self.ldap_user_base:
                raise ValueError("SAE_LDAP_SERVICE_DN needs SAE_LDAP_USER_BASE")
            if "{login}" not in self.ldap_user_filter:
                raise ValueError("SAE_LDAP_USER_FILTER must contain {login}")
        return self

    @model_validator(mode="after")
    def _oidc(self) -> Settings:
        if self.oidc_issuer is None or self.oidc_issuer == "":
            self.oidc_issuer = None
            return self
        if not self.oidc_issuer.startswith("https://") and not (
            self.oidc_allow_http and self.oidc_issuer.startswith("http://")
        ):
            raise ValueError("SAE_OIDC_ISSUER must be an https:// URL")
        if not self.oidc_client_id:
            raise ValueError("SAE_OIDC_ISSUER needs SAE_OIDC_CLIENT_ID")
        if "openid" not in self.oidc_scopes.split():
            raise ValueError("SAE_OIDC_SCOPES must include openid")
        return self

    @model_validator(mode="after")
    def _ocr_tools(self) -> Settings:
        if self.ocr:
            from sae.extraction.ocrmypdf import missing_languages

            missing = missing_languages(self.ocr_languages)
            if missing:
                raise ValueError(f"SAE_OCR=1 needs {missing} installed")
        return self

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.data_dir / 'sae.db'}"
        url = make_url(self.database_url)
        if self.workers > 1 and url.get_backend_name() == "sqlite":
            if url.database in (None, "", ":memory:") or "mode=memory" in self.database_url:
                raise ValueError(
                    f"SAE_WORKERS={self.workers} needs a database the processes share: an "
                    "in-memory SQLite database belongs to one process"
                )
        return self

    @property
    def db_url(self) -> str:
        """The database URL, defaulted (never None after validation)."""
        assert self.database_url is not None
        return self.database_url

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments, environment, .env, then sae.toml.
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            TomlConfigSettingsSource(settings_cls),
        )


class ConfigurationError(Exception):
    """The configuration is refused; the message names the variable at fault."""


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation errors into one readable message."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(part) for part in err["loc"])
            var = f"SAE_{loc.upper()}" if loc else "configuration"
            lines.append(f"{var}: {err['msg']}")
        raise ConfigurationError("invalid configuration:\n  " + "\n  ".join(lines)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings (built once)."""
    return load_settings()
