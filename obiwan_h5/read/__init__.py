"""Reading a derived file (docs/reading.md): `reader` (open, columns, bricks, filters, batches,
pandas), `view`, `subset`, `export` (FITS, and the format choice) and `export_parquet`,
`info`, `validate`, the astropy format (`astropy_io`) and `metadata` (the file's attributes,
bit definitions and units in the forms other tools take).

Needs only h5py (serial is enough), numpy and the file contract; never the job side.
pyarrow and pandas are optional (Parquet export, `DerivedFile.to_pandas`).
"""
