"""The tamper-evident journal: every fact is a leaf of an RFC 9162 Merkle tree."""
