"""Fixtures of the derive-job tests: small file systems of their own."""

import os

import pytest


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(name, size)``: a new tmpfs of `size` (``600k``, ``24m``) mounted at
    ``tmp_path / name`` (needs root, as in CI; the test is skipped otherwise), unmounted
    afterwards (lazily if a process lingers)."""
    mounts = []

    def mount(name, size):
        path = tmp_path / name
        path.mkdir()
        if os.geteuid() != 0 or os.system(f"mount -t tmpfs -o size={size} tmpfs {path} 2>/dev/null") != 0:
            pytest.skip("mounting a tmpfs needs root (CI runs as root)")
        mounts.append(path)
        return path

    yield mount
    for path in mounts:
        os.system(f"umount {path} 2>/dev/null || umount -l {path}")
