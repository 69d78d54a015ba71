"""Row filters such as ``"obiwan_mask & 1 and psql_g < 23"``, evaluated on column arrays.

The expression is parsed with `ast` and only a small, safe subset is accepted: column
names, numbers and strings, arithmetic, comparisons (chains too), bitwise ``& | ^ ~``,
``and``/``or``/``not`` (element-wise on arrays), parentheses, and the functions in
`FUNCTIONS`. Nothing is passed to `eval`.
"""

import ast
import operator
import re

import numpy as np

from ..errors import ExpressionError

__all__ = ["FUNCTIONS", "Expression", "ExpressionError"]

FUNCTIONS = {
    "abs": np.abs, "sqrt": np.sqrt, "log10": np.log10, "isnan": np.isnan, "isfinite": np.isfinite,
    "mag": lambda flux: 22.5 - 2.5 * np.log10(np.where(np.asarray(flux) > 0, flux, np.nan)),
}
_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow, ast.Mod: operator.mod, ast.BitAnd: operator.and_, ast.BitOr: operator.or_,
    ast.BitXor: operator.xor, ast.LShift: operator.lshift, ast.RShift: operator.rshift,
}
_COMPARE = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}


def _unpadded(value):
    """FITS strings are space padded (``b"REX "``): compare strings without trailing spaces,
    so ``tractor_type == "REX"`` means what it says."""
    if isinstance(value, bytes):
        return value.rstrip(b" ")
    if isinstance(value, np.ndarray) and value.dtype.kind == "S":
        return np.char.rstrip(value, b" ")
    return value


# the largest constant an expression may build (digits of a number, characters of a string)
MAX_CONSTANT_DIGITS = 4096
# the deepest nesting of operations (``-(-(-x))``, ``a + b + c`` ...) an expression may have:
# far beyond any row filter, far below what would exhaust Python's parser or recursion
MAX_DEPTH = 100
# a single "=" (not part of ==, <=, >=, !=): an assignment where a comparison was meant
_LONE_EQUALS = re.compile(r"(?<![=<>!])=(?!=)")


def _constant(node):
    """The value of a constant sub-expression (folded with size checks), or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bytes, bool)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _constant(node.operand)
        return None if value is None or isinstance(value, (str, bytes)) else (-value if isinstance(node.op, ast.USub) else value)
    if isinstance(node, ast.BinOp):
        left, right = _constant(node.left), _constant(node.right)
        if left is None or right is None or _result_size(node.op, left, right) > MAX_CONSTANT_DIGITS:
            return None
        try:
            return _BINARY[type(node.op)](left, right)
        except (ArithmeticError, TypeError, ValueError):
            return None
    return None


def _result_size(op, left, right):
    """Upper bound of the digits (or characters) of ``left <op> right`` without computing it."""
    def digits(value):
        if isinstance(value, (str, bytes)):
            return len(value)
        if isinstance(value, float):
            return 20
        return len(str(abs(int(value)))) if abs(int(value)) < 10 ** 4096 else 4097
    if isinstance(op, ast.Pow) and isinstance(right, (int, float)) and not isinstance(right, bool):
        base = abs(left) if isinstance(left, (int, float)) else 0
        if base <= 1 or right <= 0:
            return digits(left)
        return float(right) * max(np.log10(float(base)) if base < 1e308 else 308.0, 0.0) + 1
    if isinstance(op, ast.LShift) and isinstance(right, int):
        return digits(left) + max(right, 0) * 0.30103
    if isinstance(op, ast.Mult) and isinstance(left, (str, bytes)) != isinstance(right, (str, bytes)):
        text, times = (left, right) if isinstance(left, (str, bytes)) else (right, left)
        return len(text) * max(int(times), 0) if isinstance(times, int) else 0
    return digits(left) + digits(right)


def _nesting(text):
    """A lower bound of the depth of `text`, from its characters alone: the deepest
    parentheses plus the longest run of unary operators (``- - -x``, ``~~x``, ``not not
    x``). Python's own parser runs out of stack on some ten thousand of either."""
    deepest = level = run = 0
    for token in re.findall(r"\bnot\b|[()\[\]]|[-+~]|\S", text):
        if token in "([":
            level += 1
        elif token in ")]":
            level -= 1
        run = run + 1 if token in ("-", "+", "~", "not") else 0
        deepest = max(deepest, level + run)
    return deepest


def _depth(tree):
    """The depth of a parsed expression, without recursion (a chain ``a+a+...+a`` is as
    deep as it is long)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr))
    return deepest


class Expression:
    """A parsed row filter.

    Parameters
    ----------
    text : str
        The expression; its free names are column names (see `names`).
    """

    def __init__(self, text):
        self.text = text
        if _nesting(text) > MAX_DEPTH:
            raise self._too_deep()
        try:
            self._tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as err:
            hint = "; compare with == (a single = assigns)" if _LONE_EQUALS.search(text) else ""
            raise ExpressionError(f"cannot parse `where` {text!r}: {err.msg}{hint}") from None
        except (RecursionError, MemoryError):  # nesting the pre-scan cannot see
            raise self._too_deep() from None
        if _depth(self._tree) > MAX_DEPTH:
            raise self._too_deep()
        self.names = []
        self._check(self._tree)

    def _too_deep(self):
        shown = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return ExpressionError(f"`where` {shown!r}: nested more than {MAX_DEPTH} levels deep")

    def _check(self, node):
        if isinstance(node, ast.Name):
            if node.id not in FUNCTIONS and node.id not in self.names:
                self.names.append(node.id)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
                raise ExpressionError(f"`where` {self.text!r}: only {', '.join(FUNCTIONS)} may be called")
            for arg in node.args:
                self._check(arg)
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, str, bytes, bool)):
                raise ExpressionError(f"`where` {self.text!r}: unsupported constant {node.value!r}")
        elif isinstance(node, (ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare)):
            if isinstance(node, ast.BinOp):
                self._check_cost(node)
            allowed = (ast.Not, ast.Invert, ast.USub, ast.UAdd, ast.And, ast.Or, *_BINARY, *_COMPARE)
            ops = getattr(node, "ops", None) or [getattr(node, "op", None)]
            for op in ops:
                if not isinstance(op, allowed):
                    raise ExpressionError(f"`where` {self.text!r}: operator {type(op).__name__} not allowed")
            for child in ast.iter_child_nodes(node):
                if not isinstance(child, (ast.operator, ast.unaryop, ast.boolop, ast.cmpop)):
                    self._check(child)
        else:
            raise ExpressionError(f"`where` {self.text!r}: {type(node).__name__} not allowed")

    def _check_cost(self, node):
        """Refuse, before any evaluation, constant operations whose result explodes
        (``10**10**10``, ``1 << 10**9``, ``"a" * 10**9``): their cost is unbounded."""
        left, right = _constant(node.left), _constant(node.right)
        if left is None or right is None:
            return
        size = _result_size(node.op, left, right)
        if size > MAX_CONSTANT_DIGITS:
            raise ExpressionError(f"`where` {self.text!r}: a constant of about {size:.3g} digits or characters "
                                  f"is too large (at most {MAX_CONSTANT_DIGITS})")

    def evaluate(self, columns):
        """Boolean array: the rows of `columns` (name -> array) where the expression holds.

        The expression must give one truth value per row: a boolean or integer array as
        long as the columns (integers count as true where non-zero, as in
        ``obiwan_mask & 1``); a constant, a float or a string result is an error.
        """
        nrows = len(next(iter(columns.values()))) if columns else 0
        try:
            result = np.asarray(self._eval(self._tree, columns))
        except (ArithmeticError, TypeError, ValueError) as err:  # numpy's: a text column compared with a number
            raise ExpressionError(f"`where` {self.text!r}: cannot be evaluated ({err})") from None
        if result.ndim != 1 or len(result) != nrows or result.dtype.kind not in "biu":
            what = f"{result.dtype.name} {'scalar' if result.ndim == 0 else f'array of shape {result.shape}'}"
            raise ExpressionError(f"`where` {self.text!r} is not a condition on the rows: it gives a {what}, "
                                  "not one true/false value per row (compare a column, e.g. 'psql_g < 23')")
        return result.astype(bool)

    def _eval(self, node, columns):
        if isinstance(node, ast.Name):
            return columns[node.id]
        if isinstance(node, ast.Constant):
            return node.value.encode() if isinstance(node.value, str) else node.value
        if isinstance(node, ast.Call):
            return FUNCTIONS[node.func.id](*(self._eval(arg, columns) for arg in node.args))
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](self._eval(node.left, columns), self._eval(node.right, columns))
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, columns)
            if isinstance(node.op, ast.Not):
                return ~np.asarray(value).astype(bool)
            return {ast.Invert: operator.invert, ast.USub: operator.neg, ast.UAdd: operator.pos}[type(node.op)](value)
        if isinstance(node, ast.BoolOp):
            values = [np.asarray(self._eval(v, columns)).astype(bool) for v in node.values]
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            result = values[0]
            for value in values[1:]:
                result = combine(result, value)
            return result
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, columns)
            result = True
            for op, comparator in zip(node.ops, node.comparators):
                right = self._eval(comparator, columns)
                a, b = _unpadded(left), _unpadded(right)
                with np.errstate(invalid="ignore"):
                    result = np.logical_and(result, _COMPARE[type(op)](a, b))
                left = right
            return result
        raise ExpressionError(f"`where` {self.text!r}: cannot evaluate {type(node).__name__}")
