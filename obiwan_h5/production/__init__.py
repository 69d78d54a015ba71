"""Reading an obiwan production (docs/concepts.md): layout and paths (`layout`), FITS catalogs
(`fitstable`, `inputs`) and the randoms truth table (`truth`)."""
