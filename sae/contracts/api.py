"""HTTP routes of ingest contracts (``/contracts``) and archival profiles (``/profiles``)."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from sae.auth.deps import PrincipalDep, require_role
from sae.auth.service import Principal
from sae.contracts import service
from sae.contracts.errors import ProfileTooLarge
from sae.contracts.models import ArchivalProfile, Contract
from sae.contracts.schemas import ContractIn, ContractOut, ProfileOut
from sae.deps import SessionDep
from sae.errors import BadRequest

router = APIRouter(tags=["contracts"])

Archivist = Annotated[Principal, Depends(require_role("archivist"))]


def contract_out(contract: Contract) -> ContractOut:
    return ContractOut(
        **contract.clauses(), created_at=contract.created_at, updated_at=contract.updated_at
    )


def profile_out(profile: ArchivalProfile) -> ProfileOut:
    return ProfileOut(
        id=profile.id,
        name=profile.name,
        kind=profile.kind,
        filename=profile.filename,
        sha512=profile.sha512,
        size=profile.size,
        status=profile.status,
        created_at=profile.created_at,
        updated_at=profile.updated_at,
        document_url=f"/api/v1/profiles/{profile.id}/document",
    )


def _spec(body: ContractIn) -> service.ContractSpec:
    return service.ContractSpec(**body.model_dump())


@router.get("/contracts", response_model=list[ContractOut])
def list_contracts(session: SessionDep, principal: PrincipalDep) -> list[ContractOut]:
    """The ingest contracts: every one for archivists, auditors and admins, the contracts of
    their own producing services for other roles."""
    return [contract_out(c) for c in service.list_contracts(session, principal)]


@router.post("/contracts", response_model=ContractOut, status_code=201)
def create_contract(body: ContractIn, session: SessionDep, principal: Archivist) -> ContractOut:
    """Create an ingest contract (409 if its id exists). Every problem of the contract is
    listed in a 422 (unknown profile, rule or record type, bad format, bad period…)."""
    contract = service.save_contract(session, _spec(body), actor=principal)
    session.commit()
    return contract_out(contract)


@router.get("/contracts/{contract_id}", response_model=ContractOut)
def get_contract(contract_id: str, session: SessionDep, principal: PrincipalDep) -> ContractOut:
    """One contract (404 when the caller may not read it)."""
    return contract_out(service.read_contract(session, contract_id, principal))


@router.put("/contracts/{contract_id}", response_model=ContractOut)
def replace_contract(
    contract_id: str, body: ContractIn, session: SessionDep, principal: Archivist
) -> ContractOut:
    """Replace a contract's clauses (or create it). The body's id must be the path's."""
    if body.id != contract_id:
        raise BadRequest(f"the body's id {body.id!r} is not the path's {contract_id!r}")
    contract = service.save_contract(session, _spec(body), actor=principal, replace=True)
    session.commit()
    return contract_out(contract)


@router.post("/contracts/{contract_id}/disable", response_model=ContractOut)
def disable_contract(contract_id: str, session: SessionDep, principal: Archivist) -> ContractOut:
    """Disable a contract: every SIP naming it is refused from now on."""
    contract = service.set_status(session, contract_id, "inactive", actor=principal)
    session.commit()
    return contract_out(contract)


@router.post("/contracts/{contract_id}/enable", response_model=ContractOut)
def enable_contract(contract_id: str, session: SessionDep, principal: Archivist) -> ContractOut:
    """Enable a disabled contract again."""
    contract = service.set_status(session, contract_id, "active", actor=principal)
    session.commit()
    return contract_out(contract)


@router.get("/profiles", response_model=list[ProfileOut])
def list_profiles(session: SessionDep, principal: PrincipalDep) -> list[ProfileOut]:
    """The archival profiles (their documents are public grammars: every role reads them)."""
    return [profile_out(p) for p in service.list_profiles(session)]


@router.post("/profiles", response_model=ProfileOut, status_code=201)
async def create_profile(
    request: Request,
    session: SessionDep,
    principal: Archivist,
    id: Annotated[str, Query(description="The ArchivalProfile value SIPs will carry.")],
    name: Annotated[str, Query()] = "",
    filename: Annotated[str, Query()] = "",
    replace: Annotated[bool, Query(description="Replace the profile of this id.")] = False,
) -> ProfileOut:
    """Store a RelaxNG archival profile: the body is the ``.rng`` document
    (``Content-Type: application/xml``). Refused with 422 when it is not a RelaxNG grammar
    that compiles, or when it would include another document."""
    # Read up to the limit only: a body past it is refused without being held in memory.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > service.MAX_PROFILE_BYTES:
            raise ProfileTooLarge(f"the profile is over {service.MAX_PROFILE_BYTES} bytes")
        chunks.append(chunk)
    data = b"".join(chunks)
    profile = service.add_profile(
        session, id, name, data, filename=filename, actor=principal, replace=replace
    )
    session.commit()
    return profile_out(profile)


@router.get("/profiles/{profile_id}", response_model=ProfileOut)
def get_profile(profile_id: str, session: SessionDep, principal: PrincipalDep) -> ProfileOut:
    """One archival profile's description."""
    return profile_out(service.get_profile(session, profile_id))


@router.get("/profiles/{profile_id}/document")
def get_profile_document(profile_id: str, session: SessionDep, principal: PrincipalDep) -> Response:
    """The profile's RelaxNG document, byte for byte as stored."""
    profile = service.get_profile(session, profile_id)
    return Response(
        profile.document,
        media_type="application/xml",
        headers={"Repr-Digest": f"sha-512=:{_b64(profile.sha512)}:"},
    )


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()
