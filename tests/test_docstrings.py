"""Every public docstring example runs (the README promises runnable examples)."""

import doctest
import importlib
import pkgutil

import pytest

import kerasxai

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(kerasxai.__path__, "kerasxai.") if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", ["kerasxai"] + MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
