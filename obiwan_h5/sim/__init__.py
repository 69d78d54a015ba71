"""Synthetic productions (SPEC §10): `simulate` writes one, `demo` runs the whole chain on
it, `reference` generates docs/format.md from it."""
