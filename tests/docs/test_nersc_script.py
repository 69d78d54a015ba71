"""scripts/nersc/derive.slurm, run by bash with stub `module`, `lfs` and `srun` on PATH: the
flags it passes to srun and obiwan-h5, the environment of the ranks, the striping; and the
NERSC pages telling the same recipe."""

import os
import re
import shlex
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "scripts", "nersc", "derive.slurm")
RECORD = '#!/bin/bash\nprintf "%s\\n" "$(basename "$0") $*" >> "$STUB_LOG"\n'
# srun also records what the ranks would see in their environment
SRUN = RECORD + 'echo "env OMP_NUM_THREADS=${OMP_NUM_THREADS-} MPICH_MPIIO_HINTS_DISPLAY=${MPICH_MPIIO_HINTS_DISPLAY-}' \
                ' VENV_ACTIVE=${VENV_ACTIVE-}" >> "$STUB_LOG"\n'


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as handle:
        return handle.read()


def sbatch_options():
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", _read("scripts", "nersc", "derive.slurm"), re.MULTILINE))


@pytest.fixture
def stubs(tmp_path):
    """A PATH with stub NERSC commands, a fake environment to activate, and the log of calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("module", RECORD), ("lfs", RECORD), ("srun", SRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("export VENV_ACTIVE=yes\n")
    log = tmp_path / "calls.log"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STUB_LOG": str(log), "HOME": str(tmp_path),
           "PROD": str(tmp_path / "prod"), "OUT": str(tmp_path / "out"), "VENV": str(venv),
           "SLURM_CPUS_PER_TASK": sbatch_options()["cpus-per-task"]}
    return env, log


def run(env):
    return subprocess.run(["bash", SCRIPT], env=env, capture_output=True, text=True, timeout=60)


def calls(log):
    return [line.split(" ", 1) for line in log.read_text().splitlines()] if log.exists() else []


def test_srun_gets_the_cpus_per_task_and_binds_cores(stubs):
    env, log = stubs
    result = run(env)
    assert result.returncode == 0, result.stderr
    srun = [shlex.split(args) for name, args in calls(log) if name == "srun"]
    assert len(srun) == 1
    words = srun[0]
    # Slurm >= 22.05: srun does not inherit --cpus-per-task from sbatch
    assert words[:3] == ["-c", sbatch_options()["cpus-per-task"], "--cpu-bind=cores"]
    assert words[3:5] == ["obiwan-h5", "derive"]
    options = words[5:]
    assert "--resume" in options and "--overwrite" not in options
    assert options[options.index("-o") + 1] == os.path.join(env["OUT"], "derived.h5")
    assert options[options.index("--max-memory") + 1] == "1024"
    assert options[options.index("--align") + 1] == str(1024 * 1024)
    hints = [options[i + 1] for i, word in enumerate(options) if word == "--mpi-info"]
    assert hints == ["romio_cb_write=enable", "striping_factor=72", f"striping_unit={1024 * 1024}"]
    assert options[options.index("--randoms") + 1] == os.path.join(env["PROD"], "randoms.fits")
    assert "--expect-rsdirs" not in options


def test_ranks_run_one_thread_in_the_environment_with_hints_shown(stubs):
    env, log = stubs
    assert run(env).returncode == 0
    (line,) = [args for name, args in calls(log) if name == "env"]
    assert line == "OMP_NUM_THREADS=1 MPICH_MPIIO_HINTS_DISPLAY=1 VENV_ACTIVE=yes"
    assert ["module", "load PrgEnv-gnu cray-mpich cray-hdf5-parallel python"] in calls(log)


def test_output_directory_is_striped_as_nersc_recommends_before_the_job(stubs):
    env, log = stubs
    assert run(env).returncode == 0
    names = [name for name, _ in calls(log)]
    assert names.index("lfs") < names.index("srun")
    (lfs,) = [args for name, args in calls(log) if name == "lfs"]
    # NERSC's stripe_large: 72 OSTs of 1 MiB for a 100 GB - 1 TB shared file
    assert lfs == f"setstripe -c 72 -S 1M {env['OUT']}"
    assert os.path.isdir(env["OUT"])


def test_settings_come_from_the_environment(stubs):
    env, log = stubs
    env.update(EXPECT_RSDIRS="4", STRIPES="24", STRIPE_SIZE="4M", MAX_MEMORY="2048", SLURM_CPUS_PER_TASK="4")
    assert run(env).returncode == 0
    (srun,) = [shlex.split(args) for name, args in calls(log) if name == "srun"]
    assert srun[:2] == ["-c", "4"]
    assert srun[srun.index("--expect-rsdirs") + 1] == "4"
    assert srun[srun.index("--max-memory") + 1] == "2048"
    assert "striping_factor=24" in srun and f"striping_unit={4 << 20}" in srun
    assert [args for name, args in calls(log) if name == "lfs"] == [f"setstripe -c 24 -S 4M {env['OUT']}"]


def test_environment_defaults_to_global_common_software(stubs):
    env, log = stubs
    del env["VENV"]
    result = run(env)
    assert result.returncode != 0 and "set PROJECT to your NERSC project" in result.stderr
    assert not calls(log), "nothing may run before the settings are complete"
    env["PROJECT"] = "myproj"
    result = run(env)
    assert result.returncode != 0
    assert "/global/common/software/myproj/obiwan_h5-venv/bin/activate" in result.stderr
    assert "srun" not in [name for name, _ in calls(log)]


@pytest.mark.parametrize("missing", ["PROD", "OUT"])
def test_required_settings_are_named(stubs, missing):
    env, log = stubs
    del env[missing]
    result = run(env)
    assert result.returncode != 0 and f"set {missing} to" in result.stderr
    assert not calls(log)


# ------------------------------------------------------------------ one recipe in every page

NERSC_PAGES = (("docs", "nersc.md"), ("docs", "install.md"), ("docs", "performance.md"), ("docs", "derive.md"),
               ("README.md",), ("scripts", "nersc", "derive.slurm"))


def test_every_srun_of_a_derive_passes_cpus_per_task_and_binds_cores():
    for parts in NERSC_PAGES:
        text = _read(*parts).replace("\\\n", " ")
        for line in text.splitlines():
            if re.search(r"\bsrun\b", line) and "obiwan-h5" in line and not line.lstrip().startswith("#"):
                assert re.search(r"(-c \S+|--cpus-per-task[= ]\S+)", line) and "--cpu-bind=cores" in line, (
                    f"{os.path.join(*parts)}: srun without -c/--cpu-bind=cores: {line.strip()}")


def test_pages_give_the_scripts_sizing_and_nothing_outdated():
    options = sbatch_options()
    nersc = _read("docs", "nersc.md")
    for value in (f"--nodes={options['nodes']}", f"--ntasks-per-node={options['ntasks-per-node']}",
                  f"--cpus-per-task={options['cpus-per-task']}", f"--time={options['time']}", "`MAX_MEMORY` | 1024"):
        assert value in nersc, f"docs/nersc.md does not give the script's {value}"
    ranks = int(options["nodes"]) * int(options["ntasks-per-node"])
    assert f"{options['nodes']} nodes, {ranks:,} ranks" in _read("docs", "performance.md")
    outdated = {r"\$SCRATCH/obiwan_h5-venv": "the environment on purged $SCRATCH",
                r"RESUME=1": "a variable the script does not read",
                r"setstripe -c 16\b": "16 OSTs for a 100 GB - 1 TB file",
                r"100–500 bricks per rank": "another sizing",
                r"another MPI ABI": "the mpi4py < 4.1 wheel claim"}
    for parts in NERSC_PAGES:
        text = _read(*parts)
        for pattern, why in outdated.items():
            assert not re.search(pattern, text), f"{os.path.join(*parts)}: {why} ({pattern})"
    install = _read("docs", "install.md")
    assert "--force-reinstall --no-cache-dir" in install
    assert 'srun -n 2 python -c "from mpi4py import MPI; import h5py; assert h5py.get_config().mpi"' in install
    for needed in ("MPICH_MPIIO_HINTS_DISPLAY=1", "--dependency=afterany", "OMP_NUM_THREADS=1", "HPSS",
                   "/global/common/software", "obiwan-h5 validate"):
        assert needed in nersc, f"docs/nersc.md does not say {needed}"
