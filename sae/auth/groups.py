"""Group → role mapping, shared by the LDAP and OpenID Connect sign-ins.

The commune's directory says which groups a person belongs to; SAE's configuration says what
each group may do here (``SAE_GROUP_ROLES``, JSON, and/or ``SAE_GROUP_ROLES_FILE``, YAML)::

    "CN=SAE-Archivistes,OU=Groupes,DC=mairie,DC=local": {role: archivist}
    sae-depot-urbanisme: {role: depositor, producers: [URBA]}

A key holding ``=`` is a distinguished name and matches that group's DN only (compared
case-insensitively, spaces around ``=`` and ``,`` ignored, as LDAP compares DNs); any other key
is a group name and matches a group of that name (an OpenID Connect ``groups`` claim, or an LDAP
group's first RDN value, its ``cn``). The highest role among the person's mapped groups wins
(admin > archivist > auditor > depositor > reader); its producing services are the union of the
producers of the groups that grant that role. A person in no mapped group is refused: being in
the directory is not a reason to enter the archives.

Only pydantic here: the settings object imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# Highest first: the first role a person's groups grant is the one they get.
ROLE_ORDER = ("admin", "archivist", "auditor", "depositor", "reader")


class GroupRole(BaseModel):
    """What one group of the directory may do in SAE."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: str = Field(description="admin, archivist, auditor, depositor or reader")
    producers: tuple[str, ...] = Field(
        default=(), description="Producing services (depositor: required; reader: optional)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> GroupRole:
        if self.role not in ROLE_ORDER:
            raise ValueError(f"unknown role {self.role!r}; roles are: {', '.join(ROLE_ORDER)}")
        if self.role == "depositor" and not self.producers:
            raise ValueError("a depositor group needs its producing services (producers: [...])")
        if self.role in ("admin", "archivist", "auditor") and self.producers:
            raise ValueError(f"role {self.role} sees every producer: producers must be empty")
        return self


@dataclass(frozen=True)
class RoleGrant:
    """The role and producing services a person gets from their groups."""

    role: str
    producers: tuple[str, ...]
    groups: tuple[str, ...]  # the mapped groups that granted the role (for the journal)


class NoMappedGroup(Exception):
    """None of the person's groups is mapped to a role: the sign-in is refused."""

    def __init__(self, login: str) -> None:
        self.login = login
        super().__init__(
            "Votre compte est reconnu par l'annuaire, mais aucun de vos groupes ne donne accès "
            "au service d'archives. Demandez à l'administrateur de SAE de vous ajouter à un "
            "groupe autorisé."
        )


_DN_SPACES = re.compile(r"\s*([=,+])\s*")


def normalize_dn(dn: str) -> str:
    """A DN in the form used for comparisons: lower case, no spaces around ``=``, ``,``, ``+``.

    Escaped separators (``\\,``) are left as they are: a comparison, not a parser.
    """
    return _DN_SPACES.sub(r"\1", dn.strip()).lower()


def group_name(group: str) -> str:
    """A group's name: the value of a DN's first RDN (``cn=Archivistes,ou=…`` → ``archivistes``),
    or the group itself when it is not a DN; lower case."""
    if "=" not in group:
        return group.strip().lower()
    first = re.split(r"(?<!\\),", group, maxsplit=1)[0]
    return first.split("=", 1)[1].strip().lower()


def _key_matches(key: str, group: str) -> bool:
    if "=" in key:
        return "=" in group and normalize_dn(key) == normalize_dn(group)
    return group_name(group) == key.strip().lower()


def resolve_role(login: str, groups: Iterable[str], mapping: Mapping[str, GroupRole]) -> RoleGrant:
    """The role ``groups`` grant under ``mapping``; :class:`NoMappedGroup` when none does."""
    granted: list[tuple[str, GroupRole]] = []
    for group in groups:
        for key, rule in mapping.items():
            if _key_matches(key, group):
                granted.append((key, rule))
    if not granted:
        raise NoMappedGroup(login)
    best = min((rule.role for _, rule in granted), key=ROLE_ORDER.index)
    winners = [(key, rule) for key, rule in granted if rule.role == best]
    producers = sorted({p for _, rule in winners for p in rule.producers})
    return RoleGrant(
        role=best,
        producers=tuple(producers),
        groups=tuple(sorted({key for key, _ in winners})),
    )


def check_mapping(mapping: Mapping[str, GroupRole]) -> None:
    """Refuse a mapping whose keys would match the same groups twice (``CN=A`` and ``cn=a``)."""
    seen: dict[str, str] = {}
    for key in mapping:
        normal = normalize_dn(key) if "=" in key else key.strip().lower()
        if not normal:
            raise ValueError("a group name is empty")
        if normal in seen:
            raise ValueError(f"groups {seen[normal]!r} and {key!r} are the same group")
        seen[normal] = key


def load_mapping_file(path: Path) -> dict[str, GroupRole]:
    """Read a YAML mapping file (the same shape as ``SAE_GROUP_ROLES``)."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: not a readable YAML file ({exc})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of group → {{role, producers}}")
    mapping: dict[str, GroupRole] = {}
    for key, value in raw.items():
        try:
            mapping[str(key)] = GroupRole.model_validate(value)
        except ValidationError as exc:
            problems = "; ".join(err["msg"] for err in exc.errors())
            raise ValueError(f"{path}: group {key!r}: {problems}") from None
    return mapping
