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


@pytest.mark.parametrize("text", ["-" * 50000 + "ra < 1", "~" * 5000 + "obiwan_mask", "not " * 3000 + "ra",
                                  " + ".join(["ra"] * 20000) + " < 1", "ra" + " ** ra" * 3000,
                                  "(" * 150 + "ra" + ")" * 150 + " < 1", "- " * 101 + "ra < 1"])
def test_nesting_beyond_a_bound_is_one_line(text):
    """Python's parser runs out of stack (MemoryError, RecursionError) on a few thousand."""
    with pytest.raises(ExpressionError) as caught:
        Expression(text)
    assert "nested more than 100 levels deep" in str(caught.value) and "\n" not in str(caught.value)
    assert len(str(caught.value)) < 200  # the expression is shown cut


def test_nesting_within_the_bound_works():
    assert Expression("-" * 97 + "ra < 1").evaluate(COLUMNS).tolist() == [True] * 4  # -(-(...ra)) = -ra
    assert Expression("(" * 90 + "ra" + ")" * 90 + " > 1").evaluate(COLUMNS).tolist() == [False, False, True, True]
    assert Expression(" + ".join(["ra"] * 60) + " > 60").evaluate(COLUMNS).tolist() == [False, False, True, True]


@pytest.mark.parametrize("text", ["psql_g = 22", "ra > 1 and psql_g=22"])
def test_a_single_equals_sign_hints_at_double(text):
    with pytest.raises(ExpressionError, match=r"invalid syntax; compare with == \(a single = assigns\)"):
        Expression(text)


@pytest.mark.parametrize("text", ["psql_g <= ", "ra >"])
def test_other_syntax_errors_get_no_hint(text):
    with pytest.raises(ExpressionError) as caught:
        Expression(text)
    assert "==" not in str(caught.value)
