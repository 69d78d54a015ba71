"""Pure numpy: matching, photometry, selections, one brick's derivation, its summary,
row-filter expressions, brick names and the brick grid. No file, no MPI, no h5py."""
