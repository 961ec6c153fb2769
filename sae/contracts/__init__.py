"""Ingest contracts and archival profiles: what each producer may deposit (issue 20, item 5).

A contract (the SEDA ``ArchivalAgreement``) ties producers to the archival profiles they may
use, the record types and rules they may assign, the formats they may send, size limits and
mandatory checks; :func:`sae.contracts.service.evaluate` is the ingest's step that applies it.
``docs/contracts.md`` describes the clauses.
"""
