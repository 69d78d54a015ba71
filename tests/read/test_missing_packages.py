"""A missing package gives one line saying what to install, not a traceback."""

import subprocess
import sys

import pytest

CODE = ("import sys\n"
        "for name in sys.argv[1].split(','):\n"
        "    sys.modules[name] = None\n"
        "from obiwan_h5.cli import main\n"
        "sys.exit(main(sys.argv[2:]))\n")


@pytest.mark.parametrize("blocked, command", [
    ("h5py", ["info", "{path}"]),
    ("h5py", ["export", "{path}", "-o", "{tmp}/x.fits"]),
    ("pyarrow,pyarrow.parquet", ["export", "{path}", "-o", "{tmp}/x.parquet"]),
])
def test_one_line_saying_what_to_install(dr5_derived, tmp_path, blocked, command):
    argv = [arg.format(path=dr5_derived, tmp=tmp_path) for arg in command]
    run = subprocess.run([sys.executable, "-c", CODE, blocked] + argv, capture_output=True, text=True)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    package = blocked.split(",")[0]
    assert f"obiwan-h5 {command[0]}: error:" in lines[0] and f"pip install {package}" in lines[0]
