"""The dependency rules of the package (docs/architecture.md), enforced.

Two independent checks: the imports each module's source names (read with `ast`, so a
lazy import inside a function counts too), and what importing a module really loads (a
fresh interpreter per module, then `sys.modules`).
"""

import ast
import json
import os
import subprocess
import sys

import pytest

PACKAGE = "obiwan_h5"
ROOT = os.path.join(os.path.dirname(__file__), "..", PACKAGE)
SUBPACKAGES = ("fileformat", "core", "production", "job", "read", "plot", "sim", "cli")
MAX_LINES = 500

# subpackage -> subpackages (and top-level modules) it may import
# (`progress`, the one reporter of the long commands, `outputs`, the files every command
# opens and writes, and `listfiles`, the brick and column lists users give in files or on
# standard input, serve both the job and the reading side, so they may import nothing of
# either)
ALLOWED = {
    "errors": set(),
    "progress": {"errors"},
    "outputs": {"errors"},
    "fileformat": {"errors"},
    "core": {"errors", "fileformat"},
    "listfiles": {"errors", "fileformat", "core"},
    "production": {"errors", "fileformat", "core", "outputs", "listfiles"},
    "job": {"errors", "fileformat", "core", "production", "progress", "read", "outputs", "listfiles"},
    "read": {"errors", "fileformat", "core", "progress", "outputs", "listfiles"},
    "plot": {"errors", "fileformat", "core", "read", "progress", "outputs", "listfiles"},
    "sim": {"errors", "fileformat", "core", "production", "job", "read", "plot", "progress", "outputs", "listfiles"},
    "cli": {"errors", "fileformat", "core", "production", "job", "read", "plot", "sim", "progress", "outputs",
            "listfiles"},
    "__main__": {"cli"},
}
# third-party modules a layer must never import
FORBIDDEN_EXTERNAL = {
    "errors": {"numpy", "h5py", "mpi4py", "fitsio", "astropy", "matplotlib", "scipy", "argparse"},
    "progress": {"numpy", "h5py", "mpi4py", "fitsio", "astropy", "matplotlib", "scipy", "argparse"},
    "outputs": {"numpy", "h5py", "mpi4py", "fitsio", "astropy", "matplotlib", "scipy", "argparse"},
    "listfiles": {"h5py", "mpi4py", "fitsio", "astropy", "matplotlib", "scipy", "argparse"},
    "fileformat": {"h5py", "mpi4py", "fitsio", "astropy", "matplotlib", "scipy", "argparse"},
    "core": {"h5py", "mpi4py", "fitsio", "astropy", "matplotlib", "argparse"},
    "production": {"mpi4py", "matplotlib", "argparse"},
    "job": {"matplotlib", "argparse"},
    "read": {"mpi4py", "argparse"},
    "plot": {"mpi4py", "argparse"},
    "sim": {"argparse"},
}


def modules():
    """``(dotted name, path)`` of every module of the package."""
    found = []
    for directory, _, files in os.walk(ROOT):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                relative = os.path.relpath(path, os.path.join(ROOT, ".."))[:-3].replace(os.sep, ".")
                found.append((relative[: -len(".__init__")] if relative.endswith(".__init__") else relative, path))
    return sorted(found)


def layer(dotted):
    """The subpackage (or top-level module) a dotted module name belongs to."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else None


def imports_of(dotted, path):
    """Absolute names of every module `path` imports (relative imports resolved)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = dotted if path.endswith("__init__.py") else dotted.rsplit(".", 1)[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            names.append(target)
            names.extend(f"{target}.{alias.name}" for alias in node.names)
    return names


def violations(dotted, path):
    """Every broken rule of one module, as readable lines."""
    mine = layer(dotted)
    found = []
    for name in imports_of(dotted, path):
        top = name.split(".")[0]
        if top == PACKAGE:
            other = layer(name)
            if other is None or other == "__version__" or mine is None or other == mine:
                continue
            if other not in ALLOWED and other not in SUBPACKAGES:
                continue  # a name imported from the package root, e.g. __version__
            if other not in ALLOWED.get(mine, set()):
                found.append(f"{dotted} imports {name} ({mine} may not import {other})")
        elif mine in FORBIDDEN_EXTERNAL and top in FORBIDDEN_EXTERNAL[mine]:
            found.append(f"{dotted} imports {top} ({mine} may not)")
    return found


def test_every_module_follows_the_dependency_rules():
    problems = [line for dotted, path in modules() for line in violations(dotted, path)]
    assert problems == []


# the only modules of the job side that may import the reading side: the MPI driver of
# `maps` shares the rows of a finished file between ranks (the derive job never reads one)
JOB_MODULES_READING = {f"{PACKAGE}.job.maps"}


def test_only_the_maps_driver_of_the_job_side_imports_the_reading_side():
    readers = {dotted for dotted, path in modules() if layer(dotted) == "job"
               and any(layer(name) == "read" for name in imports_of(dotted, path) if name.startswith(PACKAGE + "."))}
    assert readers == JOB_MODULES_READING


def test_only_job_uses_mpi4py_and_the_mpio_driver():
    for dotted, path in modules():
        text = open(path, encoding="utf-8").read()
        if layer(dotted) != "job":
            assert "mpi4py" not in imports_of(dotted, path) and "from mpi4py" not in text, dotted
            assert 'driver="mpio"' not in text, dotted


def test_no_flag_in_library_error_messages():
    """Errors name parameters (in backquotes); only the CLI knows flags."""
    for dotted, path in modules():
        if layer(dotted) == "cli":
            continue
        tree = ast.parse(open(path, encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                text = ast.get_source_segment(open(path, encoding="utf-8").read(), node.exc) or ""
                assert " --" not in text and '"--' not in text and "'--" not in text, f"{dotted}: {text}"


def test_modules_are_short():
    long = {dotted: n for dotted, path in modules()
            if (n := sum(1 for _ in open(path, encoding="utf-8"))) > MAX_LINES}
    assert long == {}


def _loaded_by(module):
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OBIWAN_H5_NO_MPI": ""})
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_importing_the_package_is_cheap():
    loaded = _loaded_by(PACKAGE)
    assert not {"h5py", "mpi4py", "matplotlib", "astropy", "fitsio", "scipy", "tqdm"} & loaded


def test_the_progress_reporter_loads_neither_mpi_nor_tqdm_until_a_bar_is_shown():
    loaded = _loaded_by(f"{PACKAGE}.progress")
    assert not {"mpi4py", "h5py", "tqdm"} & loaded
    # nothing beyond what the package itself loads, but the module and the errors it raises
    assert loaded - _loaded_by(PACKAGE) <= {f"{PACKAGE}.progress", f"{PACKAGE}.errors"}


@pytest.mark.parametrize("module", [f"{PACKAGE}.core.{name}" for name in
                                    ("derivation", "summary", "selection", "matching", "expression", "bricks",
                                     "brickgrid", "photometry", "schema", "maps")] + [f"{PACKAGE}.fileformat"])
def test_core_loads_no_io_library(module):
    loaded = _loaded_by(module)
    assert not {"h5py", "mpi4py", "matplotlib", "astropy", "fitsio"} & loaded, module


@pytest.mark.parametrize("module", [f"{PACKAGE}.read.{name}" for name in
                                    ("reader", "view", "subset", "export", "info", "validate", "astropy_io", "maps",
                                     "maps_output")])
def test_read_side_never_loads_the_job_side(module):
    loaded = _loaded_by(module)
    assert "mpi4py" not in loaded
    assert not {m for m in loaded if m.startswith((f"{PACKAGE}.job", f"{PACKAGE}.production", f"{PACKAGE}.sim",
                                                   f"{PACKAGE}.cli"))}, module


def test_the_outputs_module_loads_only_the_errors_and_the_standard_library():
    loaded = _loaded_by(f"{PACKAGE}.outputs") - _loaded_by(PACKAGE)
    assert {name for name in loaded if name.startswith(PACKAGE)} <= {f"{PACKAGE}.outputs", f"{PACKAGE}.errors"}
    assert not {"numpy", "h5py", "mpi4py", "fitsio", "astropy", "matplotlib"} & loaded


def _assert_no_cycle(graph):
    """Depth-first search of `graph` (node -> nodes it imports); fails naming a cycle."""
    done, stack = set(), []

    def visit(node):
        assert node not in stack, f"import cycle: {' -> '.join(stack[stack.index(node):] + [node])}"
        if node in done:
            return
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            visit(other)
        stack.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)


def test_no_import_cycles_between_modules():
    """Not even inside a subpackage (the two export writers once imported each other)."""
    graph = {dotted: {name for name in imports_of(dotted, path) if name in dict(modules())} - {dotted}
             for dotted, path in modules()}
    for dotted in graph:  # a module importing its own package's __init__ is no cycle
        graph[dotted] = {name for name in graph[dotted] if not dotted.startswith(name + ".")}
    _assert_no_cycle(graph)


def test_no_import_cycles_between_subpackages():
    graph = {}
    for dotted, path in modules():
        mine = layer(dotted)
        for name in imports_of(dotted, path):
            other = layer(name) if name.startswith(PACKAGE + ".") else None
            if other in SUBPACKAGES + ("errors",) and mine and other != mine:
                graph.setdefault(mine, set()).add(other)
    _assert_no_cycle(graph)


def test_the_checker_catches_a_violation(tmp_path):
    """The rules can fail: a core module importing h5py and the job side is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("import h5py\nfrom ..job import derive\n")
    found = violations(f"{PACKAGE}.core.bad", str(bad))
    assert any("imports h5py" in line for line in found)
    assert any("may not import job" in line for line in found)


# ---------------------------------------------------------------------------- the error convention
# (docs/architecture.md, "Errors"): `*_problem` returns a reason or None and never raises;
# `check_*` raises the package's errors and never returns a reason; a package error is
# never caught to be raised again as another

PACKAGE_ERRORS = {"ObiwanError", "InputError", "BrickError", "JobError", "OutputError", "FormatError",
                  "ExpressionError", "UnknownNameError", "UnreadableFileError"}


def _own_nodes(node):
    """The nodes of a function's own body: not those of the functions or classes it defines."""
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            yield child
            yield from _own_nodes(child)


def _is_text(node):
    """Whether an expression is text for sure: a string, an f-string, ``str(...)``, or a
    sum or ``or`` of which one side is."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Name) and node.func.id == "str"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _is_text(node.left) or _is_text(node.right)
    if isinstance(node, ast.BoolOp):
        return any(_is_text(value) for value in node.values)
    if isinstance(node, ast.IfExp):
        return _is_text(node.body) or _is_text(node.orelse)
    return False


def _error_names(node):
    """The names of the package's errors an ``except`` clause catches."""
    types = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type] if node.type else []
    return {kind.id if isinstance(kind, ast.Name) else getattr(kind, "attr", "") for kind in types} & PACKAGE_ERRORS


def error_convention_violations(path):
    """Every break of the error convention in the module at `path`, as readable lines."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = node.name.lstrip("_")
            if name == "check" or name.startswith("check_"):
                found += [f"{path}:{ret.lineno}: {node.name} returns a reason (name it *_problem, or raise)"
                          for ret in _own_nodes(node) if isinstance(ret, ast.Return) and ret.value is not None
                          and _is_text(ret.value)]
            if name.endswith("_problem") or name == "problem":
                found += [f"{path}:{raised.lineno}: {node.name} raises (a *_problem returns the reason)"
                          for raised in _own_nodes(node) if isinstance(raised, ast.Raise)]
        elif isinstance(node, ast.ExceptHandler) and _error_names(node):
            for raised in (child for statement in node.body for child in ast.walk(statement)):
                if (isinstance(raised, ast.Raise) and isinstance(raised.exc, ast.Call)
                        and getattr(raised.exc.func, "id", getattr(raised.exc.func, "attr", "")) in PACKAGE_ERRORS):
                    found.append(f"{path}:{raised.lineno}: catches {', '.join(sorted(_error_names(node)))} "
                                 "to raise it again as another error")
    return sorted(found, key=lambda line: int(line[len(path) + 1:].split(":")[0]))


def test_every_module_follows_the_error_convention():
    found = [line for _, path in modules() for line in error_convention_violations(path)]
    assert not found, "\n".join(found)


def test_the_error_convention_checker_catches_each_break(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def check_size(n):\n    if n < 0:\n        return f'`n` {n}: negative'\n\n"
        "def size_problem(n):\n    if n < 0:\n        raise InputError('negative')\n    return None\n\n"
        "def read(path):\n    try:\n        open(path)\n    except InputError as err:\n"
        "        raise InputError(str(err)) from None\n\n"
        "def fine(path):\n    def check_inner():\n        return 'a nested function is its own'\n"
        "    try:\n        return size_problem(path)\n    except OSError as err:\n"
        "        raise InputError(f'{path}: {err}') from None\n")
    found = error_convention_violations(str(bad))
    assert [line.split(": ", 1)[1] for line in found] == [
        "check_size returns a reason (name it *_problem, or raise)",
        "size_problem raises (a *_problem returns the reason)",
        "catches InputError to raise it again as another error",
        "check_inner returns a reason (name it *_problem, or raise)",
    ], found


# ------------------------------------------------------------ one home for each fact

# the layers that are pure functions of their arguments: core computes, fileformat states
# the contract; reading a list file or standard input is `listfiles`'s
PURE_LAYERS = ("core", "fileformat")
FILE_MODULES = {"os", "io", "pathlib", "shutil", "tempfile", "glob", "stat", "fcntl", "mmap"}


def file_access(path):
    """Where a module touches files or the standard streams: an import of a file module,
    a call of the built-in ``open``, ``sys.stdin``/``stdout``/``stderr``."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {alias.name}" for alias in node.names
                      if alias.name.split(".")[0] in FILE_MODULES]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module.split(".")[0] in FILE_MODULES:
            found.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
            found.append(f"line {node.lineno}: open()")
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "sys"
              and node.attr in ("stdin", "stdout", "stderr")):
            found.append(f"line {node.lineno}: sys.{node.attr}")
    return found


def test_core_and_fileformat_touch_no_file():
    touching = {dotted: found for dotted, path in modules()
                if layer(dotted) in PURE_LAYERS and (found := file_access(path))}
    assert touching == {}


# the tables of fileformat that define bits; only fileformat may build a constant from them
BIT_TABLES = {"OBIWAN_BITS", "TARGET_BITS", "TARGET_MASK_BITS"}


def _bit_shift(value):
    """Whether an expression shifts a 1 left (``1 << bit``): the value of a bit."""
    return any(isinstance(node, ast.BinOp) and isinstance(node.op, ast.LShift)
               and isinstance(node.left, ast.Constant) and node.left.value == 1 for node in ast.walk(value))


def _named_like_a_bit(name, value):
    """Whether a module-level name reads as a bit: a word BIT or BITS; the upper-case name
    of a bit of either mask, or its first two words (``RECOVERED``, ``ON_REAL``,
    ``EBOSS_NGC_TRUE``); or a mask value (a word MASK, TARGETS or DEFINED) made of
    ``1 << ...``."""
    from obiwan_h5.fileformat import OBIWAN_BITS, TARGET_MASK_BITS

    words = name.upper().split("_")
    if {"BIT", "BITS"} & set(words):
        return True
    bit_names = {bit.upper() for bit in list(OBIWAN_BITS) + list(TARGET_MASK_BITS)}
    if name.upper() in bit_names | {"_".join(bit.split("_")[:2]) for bit in bit_names}:
        return True
    return bool({"MASK", "MASKS", "TARGETS", "DEFINED"} & set(words)) and _bit_shift(value)


def bit_constants(path):
    """Module-level assignments of `path` that define a bit of their own: any whose value
    reads a bit table (``OBIWAN_BITS[...]``, ``TARGET_BITS[...]``), and any named like a bit
    (`_named_like_a_bit`: ``RECOVERED_BIT = 0``, ``ON_REAL = 2``, ``DEFINED_MASK = 1 << 0 | 1 << 1``)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        names = [name.id for target in targets for name in ast.walk(target) if isinstance(name, ast.Name)]
        reads_table = any(isinstance(sub, ast.Subscript)
                          and getattr(sub.value, "id", getattr(sub.value, "attr", None)) in BIT_TABLES
                          for sub in ast.walk(value))
        if reads_table or any(_named_like_a_bit(name, value) for name in names):
            found.append(f"line {node.lineno}: {', '.join(names)}")
    return found


def test_no_module_outside_fileformat_defines_a_bit():
    """Every bit, its value and its name live in fileformat (`RECOVERED_BIT`, `target_bit`,
    `is_recovered`, `is_selected`, `OBIWAN_DEFINED`, `MEASURED_TARGETS`); other modules
    import them."""
    defining = {dotted: found for dotted, path in modules()
                if layer(dotted) != "fileformat" and (found := bit_constants(path))}
    assert defining == {}


def undocumented(path):
    """The public functions and classes of a module that have no docstring.

    Public: a function or class at module level whose name does not start with an
    underscore, and each method (properties included) of such a class whose name does not
    start with one (so neither ``__init__`` nor helpers such as ``_hist``). A function
    nested in another is not part of any interface. A method that overrides a documented
    one counts like any other: it says what it does for its own class.
    """
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    missing = []

    def visit(nodes, owner):
        for node in nodes:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if node.name.startswith("_"):
                continue
            if ast.get_docstring(node) is None:
                missing.append(f"{owner}{node.name} (line {node.lineno})")
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{owner}{node.name}.")

    visit(tree.body, "")
    return missing


def test_every_public_function_and_class_has_a_docstring():
    missing = {dotted: found for dotted, path in modules() if (found := undocumented(path))}
    assert missing == {}


def test_the_fact_checkers_catch_a_violation(tmp_path):
    """Each of the three checks above can fail, and a name that only looks like a bit's
    (``ON_REAL_FRACTION``, ``MASK_KEYWORDS``, a size ``1 << 20``) is no bit."""
    bad = tmp_path / "bad.py"
    bad.write_text('import os\nfrom ..fileformat import OBIWAN_BITS\n'
                   'RECOVERED = 1 << OBIWAN_BITS["recovered"][0]\nON_REAL_SOURCE_BIT = 1\nON_REAL = 2\n'
                   'DEFINED_MASK = 1 << 0 | 1 << 1\nMAX_BYTES = 1 << 20\nON_REAL_FRACTION = 0.3\n'
                   'MASK_KEYWORDS = ("A",)\nWIDTH = OBIWAN_WIDTH["x"]\nTEXT = open("x").read()\n\n\n'
                   'def public():\n    pass\n\n\nclass Public:\n    """Documented."""\n\n'
                   '    def method(self):\n        pass\n\n    def _private(self):\n        pass\n\n\n'
                   'def _private():\n    pass\n')
    assert bit_constants(str(bad)) == ["line 3: RECOVERED", "line 4: ON_REAL_SOURCE_BIT", "line 5: ON_REAL",
                                       "line 6: DEFINED_MASK"]
    assert undocumented(str(bad)) == ["public (line 14)", "Public.method (line 21)"]
    assert file_access(str(bad)) == ["line 1: import os", "line 11: open()"]
