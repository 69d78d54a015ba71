"""Reading an obiwan production (SPEC §2): layout and paths (`layout`), FITS catalogs
(`fitstable`, `inputs`) and the randoms truth table (`truth`)."""
