"""The library's layout rules, read from its source: functions of one idea, no borrowed private names."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import steplab

LIBRARY = Path(steplab.__file__).parent
MAX_FUNCTION_LINES = 80


def _modules():
    return sorted(LIBRARY.rglob("*.py"))


def _long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """``(name, lines)`` of every function (methods and nested ones too) longer than ``limit`` lines,
    counted from the ``def`` line to the last line of the body."""
    long = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                long.append((node.name, lines))
    return long


def _private_imports(source: str) -> list[str]:
    """Names starting with one underscore imported from another module (``from m import _x``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            found += [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_the_walk_sees_the_library():
    names = {p.relative_to(LIBRARY).as_posix() for p in _modules()}
    assert {"run.py", "records.py", "explore/batch_size.py", "optim/base.py"} <= names


def test_the_checks_catch_what_they_look_for():
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    assert _long_functions(f"def f():\n{body}\n") == [("f", 81)]
    assert _long_functions(f"def f():\n{body[: body.rindex(chr(10))]}\n") == []
    assert _long_functions(f"class C:\n    def m(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n") == [("m", 81)]
    assert _private_imports("from .run import _loop, minimize\nfrom . import __version__") == ["_loop"]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(LIBRARY).as_posix())
def test_no_function_is_over_80_lines(path):
    assert _long_functions(path.read_text(encoding="utf-8")) == [], (
        f"{path.name}: split these by idea (argument checks, one step, record building)")


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(LIBRARY).as_posix())
def test_no_module_imports_another_modules_private_names(path):
    assert _private_imports(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(LIBRARY).as_posix())
def test_every_module_compiles_without_warnings(path):
    # an invalid escape such as "\sigma" in a docstring that is not raw warns at compile time
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile(path.read_text(encoding="utf-8"), str(path), "exec")


def test_the_compile_check_catches_an_escape_in_a_plain_docstring():
    import warnings

    with warnings.catch_warnings(), pytest.raises((SyntaxError, DeprecationWarning, SyntaxWarning)):
        warnings.simplefilter("error")
        compile('def f():\n    """$\\sigma$"""\n', "m.py", "exec")
