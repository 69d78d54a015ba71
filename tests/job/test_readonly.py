"""The input tree is only ever read: derive runs on a read-only copy and changes nothing."""

import errno
import hashlib
import os
import shutil
import subprocess

import pytest

from obiwan_h5.job import DeriveOptions, derive
from obiwan_h5.job.mpi import SerialComm


def _snapshot(root):
    state = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            info = os.stat(path)
            state[os.path.relpath(path, root)] = (info.st_size, info.st_mtime_ns,
                                                  hashlib.blake2b(open(path, "rb").read()).hexdigest())
    return state


@pytest.fixture
def readonly_production(dr5_production, tmp_path):
    """A copy of the production that cannot be written: a read-only bind mount when we are
    root (root ignores file modes), file modes otherwise."""
    source = tmp_path / "source"
    shutil.copytree(dr5_production, source)
    if os.geteuid() != 0:
        for directory, _, files in os.walk(source):
            for name in files:
                os.chmod(os.path.join(directory, name), 0o444)
            os.chmod(directory, 0o555)
        yield str(source)
        return
    mounted = tmp_path / "readonly"
    mounted.mkdir()
    for command in (["mount", "--bind", str(source), str(mounted)],
                    ["mount", "-o", "remount,ro,bind", str(mounted)]):
        if subprocess.run(command, capture_output=True).returncode != 0:
            subprocess.run(["umount", str(mounted)], capture_output=True)
            pytest.skip("running as root without permission for a read-only bind mount")
    try:
        yield str(mounted)
    finally:
        subprocess.run(["umount", str(mounted)], check=True)


def test_derive_on_a_read_only_tree(readonly_production, tmp_path):
    probe = os.path.join(readonly_production, "probe")
    with pytest.raises(OSError) as refused:
        open(probe, "w")  # the tree really is read-only
    assert refused.value.errno in (errno.EROFS, errno.EACCES), refused.value
    before = _snapshot(readonly_production)
    output = str(tmp_path / "derived.h5")
    totals = derive(DeriveOptions(readonly_production, output), SerialComm())
    assert totals["failed"] == 0 and totals["done"] == totals["bricks"] > 0
    resumed = derive(DeriveOptions(readonly_production, output, resume=True), SerialComm())
    assert resumed["bricks"] == 0
    assert _snapshot(readonly_production) == before
