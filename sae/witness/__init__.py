"""The stand-alone C2SP witness (``sae witness``): co-signs a log's checkpoints that extend the
last one it co-signed. It shares no state with the archive: no database, no settings, only its
``--data DIR``. See docs/witness.md."""
