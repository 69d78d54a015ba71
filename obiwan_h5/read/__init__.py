"""Reading a derived file (SPEC §7): `reader` (open, columns, bricks, filters, batches),
`view`, `subset`, `export`, `info`, `validate`, and the astropy format (`astropy_io`).

Needs only h5py (serial is enough), numpy and the file contract; never the job side.
"""
