"""What the contract tests share: a contract through the API, a profile of the test SIPs."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api

#: A RelaxNG profile of the test SIPs (``tests.sipfactory``): the ``Comment`` must be
#: "SIP de test"; anything may follow it.
TEST_PROFILE = b"""<?xml version="1.0" encoding="UTF-8"?>
<grammar xmlns="http://relaxng.org/ns/structure/1.0"
         ns="fr:gouv:culture:archivesdefrance:seda:v2.2">
  <start>
    <element name="ArchiveTransfer">
      <element name="Comment"><value>SIP de test</value></element>
      <zeroOrMore><ref name="anything"/></zeroOrMore>
    </element>
  </start>
  <define name="anything">
    <element>
      <anyName/>
      <zeroOrMore>
        <choice><attribute><anyName/></attribute><text/><ref name="anything"/></choice>
      </zeroOrMore>
    </element>
  </define>
</grammar>
"""


def add_profile(api: Api, profile_id: str, data: bytes, **params: Any) -> Any:
    return api.client.post(
        "/api/v1/profiles",
        params={"id": profile_id, **params},
        content=data,
        headers={**api.auth(), "Content-Type": "application/xml"},
    )


def add_contract(api: Api, **clauses: Any) -> dict[str, Any]:
    body = {"id": "CONV-2026-01", "name": "Convention urbanisme", "producers": ["URBANISME"]}
    body.update(clauses)
    response = api.client.post("/api/v1/contracts", json=body, headers=api.auth())
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result
