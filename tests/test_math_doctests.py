"""The worked examples in the math modules' docstrings run and print what they claim."""

import doctest

import pytest

from llmnotes import autograd, linalg, numpy_mlp, probability


@pytest.mark.parametrize("module", [linalg, autograd, probability, numpy_mlp], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
