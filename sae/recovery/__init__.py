"""Recovery: the catalogue rebuilt from one offer (issue 17).

The offers hold the transfers' descriptions (``transfers/<id>.zip``) and the journal in signed
segments (``journal/segments/``); the catalogue is a projection of the two. :mod:`.replay` says,
for every type of journal event, how it is replayed; the rebuild, the drill and the restore of a
backup walk the journal in leaf order and replay each leaf.
"""
