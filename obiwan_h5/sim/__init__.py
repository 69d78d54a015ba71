"""Synthetic productions: `simulate` writes one, `demo` runs the whole chain on
it, `reference` generates docs/format.md from it."""
