"""asv benchmark suite of sdebench (see asv.conf.json at the repository root and docs/sweeps.md)."""
