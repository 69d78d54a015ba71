"""The one home of each bit and column name (`fileformat`): the helpers every module uses
agree with the bit tables written into files, and with the names of the columns."""

import numpy as np
import pytest

from obiwan_h5.fileformat import (
    MEASURED_TARGETS,
    OBIWAN_BITS,
    OBIWAN_DEFINED,
    ON_REAL_SOURCE_BIT,
    RECOVERED_BIT,
    SELECTION_LABELS,
    SELECTIONS,
    TARGET_BITS,
    TRACTOR_PREFIX,
    TRUTH_PREFIX,
    bitmask,
    describe,
    injected_flux_column,
    is_recovered,
    is_selected,
    mask_value,
    target_bit,
    tractor_column,
    transmission_column,
    truth_column,
)


def test_the_named_bits_are_those_of_the_tables():
    assert (RECOVERED_BIT, ON_REAL_SOURCE_BIT) == (OBIWAN_BITS["recovered"][0], OBIWAN_BITS["on_real_source"][0])
    measured = {target_bit(selection) for selection in SELECTIONS}
    true = {target_bit(selection, true=True) for selection in SELECTIONS}
    assert measured == {TARGET_BITS[name] for name in SELECTIONS}
    assert true == {TARGET_BITS[f"{name}_true"] for name in SELECTIONS}
    # the selections name every bit of targets_mask, each once
    assert sorted(measured | true) == sorted(TARGET_BITS.values()) and not measured & true
    assert OBIWAN_DEFINED == 0b11 and MEASURED_TARGETS == 0b111  # docs/format.md: bits 0-1, and 0-2
    assert mask_value([3, 3, 0]) == 9 and mask_value([]) == 0
    assert set(SELECTION_LABELS) == set(SELECTIONS)


def test_a_mask_built_from_flags_reads_back_the_flags():
    rng = np.random.default_rng(5)
    flags = {bit: rng.random(200) < 0.5 for bit in TARGET_BITS.values()}
    mask = bitmask(flags)
    assert mask.dtype == np.uint8
    assert np.array_equal(mask, sum(np.where(chosen, 1 << bit, 0) for bit, chosen in flags.items()))
    for selection in SELECTIONS:
        for true in (False, True):
            assert np.array_equal(is_selected(mask, selection, true), flags[target_bit(selection, true)])
    recovered = rng.random(200) < 0.5
    obiwan = bitmask({RECOVERED_BIT: recovered, ON_REAL_SOURCE_BIT: recovered & (rng.random(200) < 0.3)})
    assert np.array_equal(is_recovered(obiwan), recovered)
    assert not np.any(obiwan.astype(np.int64) & ~OBIWAN_DEFINED)
    # a scalar flag broadcasts against the arrays
    assert np.array_equal(bitmask({0: np.array([True, False]), 2: True}), [5, 4])


@pytest.mark.parametrize("name, column, text", [
    (truth_column("g"), "psql_g", "truth from the randoms table"),
    (tractor_column("flux_g"), "tractor_flux_g", "Tractor: model flux in band g"),
    (transmission_column("r"), "mw_transmission_r", "Milky Way transmission applied to the injected r flux"),
    (injected_flux_column("z"), "zflux", "z flux added to the images"),
])
def test_column_names_by_source(name, column, text):
    assert name == column
    assert describe(name)[0].startswith(text)
    assert (TRUTH_PREFIX, TRACTOR_PREFIX) == ("psql_", "tractor_")
