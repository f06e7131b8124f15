"""The audit ledger (SPEC 7): canonical JSON, the Merkle tree, signed checkpoints, keys,
the entry types and their fields (`entries`: the one owner a new entry type registers
with), the writer (`ledger`, which also records key rotations and revocations), reading
and verifying the ledger's files, its findings, and SLSA provenance.
May import: `runner.secrets` and the base modules.
"""
