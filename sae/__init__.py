"""SAE: an electronic records archiving service for French local authorities.

Ingests SEDA 2.x transfers, stores every object write-once on several offers, journals every fact
in a Merkle tree whose heads are signed and time-stamped, and applies retention rules by law.
"""

__version__ = "0.1.0"
