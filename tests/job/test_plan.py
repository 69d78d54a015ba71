"""The offset plan, the rank assignment and the memory segments (pure functions)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from obiwan_h5.fileformat import FAILED, PENDING
from obiwan_h5.job.plan import BrickScan, assign_ranges, brick_cost, build_plan, split_segments


def _scan(name, count, status=PENDING, width=12):
    schema = {"id": (np.dtype("i8"), ()), "tractor_type": (np.dtype(f"S{width % 5 + 1}"), ())}
    return BrickScan(name, status=status, count=count if status == PENDING else 0,
                     schema=schema if status == PENDING else {}, unique_id_width=width)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5000), min_size=1, max_size=60), st.integers(1, 9))
def test_assignment_is_a_partition_into_contiguous_ranges(counts, nranks):
    bounds = assign_ranges(counts, nranks)
    assert len(bounds) == nranks + 1
    assert bounds[0] == 0 and bounds[-1] == len(counts)
    assert np.all(np.diff(bounds) >= 0)
    # balanced: no rank carries more than its share plus one brick
    counts = np.asarray(counts, dtype=np.float64)
    loads = [counts[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])]
    slack = len(counts) * (max(counts.mean(), 1.0) * 1e-3 + 1e-9)  # the per-brick base cost
    assert max(loads) <= counts.sum() / nranks + counts.max() + slack


def test_assignment_balances_rows():
    counts = np.array([100] * 40 + [1000] * 4 + [0] * 10)
    bounds = assign_ranges(counts, 4)
    loads = [counts[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])]
    assert max(loads) <= 1.3 * counts.sum() / 4
    # more ranks than bricks: every brick still owned exactly once, extra ranks idle
    bounds = assign_ranges([5, 7], 5)
    assert bounds[-1] == 2 and sorted(np.diff(bounds)) == [0, 0, 0, 1, 1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3000), st.booleans(), st.booleans()), min_size=1, max_size=50),
       st.integers(1, 6), st.integers(1, 20000))
def test_offsets_and_segments_cover_rows_without_gap_or_overlap(bricks, nranks, max_rows):
    scans = [_scan(f"{i:04d}p000", count, FAILED if failed else PENDING)
             for i, (count, failed, _) in enumerate(bricks)]
    plan = build_plan(scans)
    assert plan.offsets[0] == 0
    assert np.array_equal(plan.offsets + plan.counts, np.append(plan.offsets[1:], plan.total_rows))
    todo = np.array([flag for _, _, flag in bricks])
    bounds = assign_ranges(np.where(todo, plan.counts, 0), nranks)
    covered = []
    for rank in range(nranks):
        for b0, b1 in split_segments(todo, bounds[rank], bounds[rank + 1], plan.counts, 8, max_rows * 8):
            assert b1 > b0 and all(todo[b0:b1])
            rows = plan.counts[b0:b1].sum()
            assert rows <= max_rows or b1 - b0 == 1
            covered.extend(range(b0, b1))
    assert covered == [i for i in range(len(bricks)) if todo[i]]


def test_plan_schema_union_widens_strings_and_takes_widest_unique_id():
    plan = build_plan([_scan("0001p000", 3, width=10), _scan("0002p000", 2, width=14), _scan("0003p000", 0, FAILED)])
    columns = {c.name: c for c in plan.columns}
    assert columns["unique_id"].dtype == np.dtype("S14")
    assert columns["tractor_type"].dtype == np.dtype("S5")
    assert list(plan.counts) == [3, 2, 0] and list(plan.status) == [PENDING, PENDING, FAILED]


def test_brick_with_contradicting_schema_fails_alone():
    good = _scan("0001p000", 4)
    clash = _scan("0002p000", 3)
    clash.schema = {"id": (np.dtype("f8"), ())}  # float ids where earlier bricks have int64
    later = _scan("0003p000", 2)
    plan = build_plan([good, clash, later])
    assert list(plan.status) == [PENDING, FAILED, PENDING]
    assert "columns differ from earlier bricks" in plan.messages[1] and "id" in plan.messages[1]
    assert list(plan.counts) == [4, 0, 2] and list(plan.offsets) == [0, 4, 4]


def test_bricks_of_many_rsdirs_weigh_more():
    """Cost follows the rsdirs a brick has: 4 one-rsdir bricks then 4 of seven rsdirs, on
    two ranks, give the second rank fewer bricks but a comparable number of rsdirs."""
    n_rsdirs = np.array([1, 1, 1, 1, 7, 7, 7, 7])
    bounds = assign_ranges(brick_cost(n_rsdirs), 2)
    assert bounds[1] >= 5  # by brick count alone the split would be at 4
    loads = [brick_cost(n_rsdirs[a:b]).sum() for a, b in zip(bounds[:-1], bounds[1:])]
    assert max(loads) <= brick_cost(n_rsdirs).sum() / 2 + brick_cost(7)
    assert np.all(np.diff(brick_cost([0, 1, 2, 10])) > 0)


def test_brick_weights_list_the_rsdirs_of_each_brick(production_copy):
    """The weights the job balances with, before any scan: one rsdir removed from the first
    three bricks, a missing brick directory costs the least and does not stop the job."""
    import shutil

    from obiwan_h5.job import DeriveOptions
    from obiwan_h5.job.mpi import SerialComm
    from obiwan_h5.job.planning import brick_weights
    from obiwan_h5.production.layout import Production

    production = Production(production_copy)
    names = open(f"{production_copy}/bricks.txt").read().split()
    for name in names[:3]:
        shutil.rmtree(production.obiwan_dir(name, "rs1"))
    shutil.rmtree(production.obiwan_dir(names[3]))
    options = DeriveOptions(production_copy, f"{production_copy}/out.h5")
    weights = brick_weights(options, SerialComm(), production, names)
    assert list(weights) == list(brick_cost([1, 1, 1, 0] + [2] * (len(names) - 4)))


def test_resume_weights_come_from_the_file_without_listing(dr5_production, dr5_derived, tmp_path):
    """Resuming, a brick weighs the rows it still has to derive (none when done), read from
    the file's index; no brick directory is listed for it."""
    import shutil

    import h5py

    from obiwan_h5.fileformat import PENDING
    from obiwan_h5.job import DeriveOptions
    from obiwan_h5.job.mpi import SerialComm
    from obiwan_h5.job.planning import brick_weights
    from obiwan_h5.production.layout import Production

    output = tmp_path / "resumed.h5"
    shutil.copy(dr5_derived, output)
    with h5py.File(output, "r+") as derived:
        derived["bricks/status"][1] = PENDING
        names = [name.decode() for name in derived["bricks/name"][:]]
        counts = derived["bricks/count"][:]

    class Unlisted(Production):
        listed = 0

        def rsdirs(self, brickname):
            Unlisted.listed += 1
            return super().rsdirs(brickname)

    options = DeriveOptions(dr5_production, str(output), resume=True)
    weights = brick_weights(options, SerialComm(), Unlisted(dr5_production), names)
    assert list(weights) == [0.0, counts[1] + 1.0] + [0.0] * (len(names) - 2)
    assert Unlisted.listed == 0


def _derived(rsdir_width, extra=()):
    from obiwan_h5.core.derivation import derived_schema

    tractor = {"ra": (np.dtype("f8"), ()), **{name: (np.dtype("f4"), ()) for name in extra}}
    return derived_schema({"id": (np.dtype("i8"), ())}, {"g": (np.dtype("f4"), ())}, tractor, rsdir_width)


def _gathered(scans):
    from obiwan_h5.job.plan import detach_schemas, gather_scans

    return gather_scans([detach_schemas(scans)])


def test_unchanged_bricks_take_the_old_columns_only_when_they_are_proven():
    """An update's unchanged bricks (files not opened) take the schema of the known ones
    with their own rsdir width, when the first brick's schema is known and every known one
    is the old file's; else the caller must scan them."""
    from obiwan_h5.job.plan import resolve_unchanged

    old = {"unique_id": (np.dtype("S16"), ()), **_derived(4)}
    marker = "old"

    def scans(first_known=True, known_width=16, known=_derived(3)):
        first = BrickScan("0001p000", count=3, schema=known if first_known else marker, unique_id_width=known_width,
                          rsdirs=["rs0"])
        unchanged = BrickScan("0002p000", count=2, schema=marker, rsdirs=["rs10"])
        later = BrickScan("0003p000", count=2, schema=known, unique_id_width=known_width, rsdirs=["rs0"])
        return [first, unchanged, later]

    gathered, distinct = _gathered(scans())
    assert resolve_unchanged(gathered, distinct, old, marker)
    plan = build_plan(gathered, distinct)
    columns = {column.name: column for column in plan.columns}
    assert list(columns) == ["unique_id"] + list(_derived(4))
    assert columns["rsdir"].dtype == np.dtype("S4") and columns["unique_id"].dtype == np.dtype("S16")
    assert list(plan.status) == [PENDING] * 3
    for refused in (scans(first_known=False), scans(known_width=15), scans(known=_derived(3, ["flux_g"]))):
        gathered, distinct = _gathered(refused)
        assert not resolve_unchanged(gathered, distinct, old, marker)


def test_detached_scans_are_copies_keyed_by_schema():
    from obiwan_h5.job.plan import detach_schemas

    shared = {"id": (np.dtype("i8"), ())}
    originals = [_scan("0001p000", 2), BrickScan("0002p000", count=1, schema=shared),
                 BrickScan("0003p000", count=1, schema=dict(shared)), _scan("0004p000", 0, FAILED)]
    detached, distinct = detach_schemas(originals)
    assert [scan.schema_key for scan in detached] == [0, 1, 1, -1]
    assert len(distinct) == 2 and all(scan.schema == {} for scan in detached)
    assert originals[1].schema is shared and originals[1].schema_key == -1  # the scans themselves are kept


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3000), st.booleans(), st.booleans()), min_size=1, max_size=50),
       st.integers(1, 20000))
def test_bricks_copied_byte_for_byte_have_segments_of_their_own(bricks, max_rows):
    """An update's bricks copied byte for byte take no row memory: their segments hold only
    them, whatever their size; the others' segments are bounded as before; every brick to
    write is in one segment."""
    counts = np.array([count for count, _, _ in bricks])
    todo = np.array([flag for _, flag, _ in bricks])
    apart = {number for number, (_, _, byte_copied) in enumerate(bricks) if byte_copied}
    covered = []
    for b0, b1 in split_segments(todo, 0, len(bricks), counts, 8, max_rows * 8, apart):
        assert b1 > b0 and all(todo[b0:b1])
        kinds = {brick in apart for brick in range(b0, b1)}
        assert len(kinds) == 1
        if kinds == {False}:
            assert counts[b0:b1].sum() <= max_rows or b1 - b0 == 1
        covered.extend(range(b0, b1))
    assert covered == [i for i in range(len(bricks)) if todo[i]]
    # neighbours copied byte for byte are never cut apart, however many rows they hold
    segments = split_segments(np.ones(3, bool), 0, 3, np.array([10**6] * 3), 8, 8, {0, 1, 2})
    assert segments == [(0, 3)]


def test_copy_runs_are_consecutive_in_both_files_and_big_runs_are_copied_as_bytes():
    from obiwan_h5.job.update import byte_copied_bricks, copy_runs

    # plan brick -> old brick: 2 is derived, 5 comes from elsewhere in the old file
    copies = {0: 0, 1: 1, 3: 2, 4: 3, 5: 9, 6: 10}
    assert copy_runs(copies, 0, 7) == [(0, 2), (3, 5), (5, 7)]
    assert copy_runs(copies, 1, 4) == [(1, 2), (3, 4)]
    counts = np.array([5, 5, 100, 1, 1, 50, 50])
    # runs of at least 10 rows of 4 bytes: (0, 2) with 10 rows and (5, 7) with 100; not (3, 5)
    assert byte_copied_bricks(copies, 0, 7, counts, 4, 40) == {0, 1, 5, 6}
    assert byte_copied_bricks(copies, 0, 7, counts, 4, 41) == {5, 6}
