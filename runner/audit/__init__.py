"""The audit ledger (SPEC 7): canonical JSON, the Merkle tree, signed checkpoints, keys,
the entry types and their fields (`entries`: the one owner a new entry type registers
with), the writer (`ledger`, which also records key rotations and revocations, and
checks the ledger against runner's record of what it last signed, `head`, before it
signs), the keys' history as the ledger records it (`keyevents`), reading and verifying
the ledger's files, its findings, the anchor store (`anchors`), and SLSA provenance.
May import: `runner.secrets` and the base modules.
"""
