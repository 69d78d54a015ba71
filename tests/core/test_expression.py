"""Row filters: bounded in cost, and always one truth value per row."""

import numpy as np
import pytest

from obiwan_h5.core.expression import Expression
from obiwan_h5.errors import ExpressionError

COLUMNS = {"ra": np.arange(4.0), "obiwan_mask": np.array([0, 1, 3, 2], np.uint8), "psql_g": np.full(4, 22.0)}


@pytest.mark.parametrize("text", ["ra > 10**10**10", "ra > 1 << 10**9", "ra > 2**(10**8)", "ra > -(9**9**9)"])
def test_constants_whose_cost_explodes_are_refused_before_evaluation(text):
    with pytest.raises(ExpressionError, match="too large"):
        Expression(text)


@pytest.mark.parametrize("text", ["1", "True", "psql_g", "ra + 1", "'REX'"])
def test_a_filter_must_give_one_truth_value_per_row(text):
    with pytest.raises(ExpressionError, match="not a condition on the rows"):
        Expression(text).evaluate(COLUMNS)


def test_conditions_and_integer_masks_select_rows():
    assert Expression("obiwan_mask & 1").evaluate(COLUMNS).tolist() == [False, True, True, False]
    assert Expression("ra > 2**1 or psql_g < 20").evaluate(COLUMNS).tolist() == [False, False, False, True]
    assert Expression("ra > 10**3").evaluate(COLUMNS).tolist() == [False] * 4


def test_overflow_is_an_expression_error():
    with pytest.raises(ExpressionError, match="cannot be evaluated"):
        Expression("ra > 10**400").evaluate(COLUMNS)
