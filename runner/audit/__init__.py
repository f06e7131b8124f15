"""The audit ledger (SPEC 7): canonical JSON, the Merkle tree, signed checkpoints, keys, the
writer, reading and verifying the ledger's files, its findings, and SLSA provenance.
May import: `runner.secrets` and the base modules.
"""
