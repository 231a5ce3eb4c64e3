"""Fixtures shared by the package tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def two_threads():
    """Run a test with two torch threads: the split decode paths only run with more than one
    thread, and xdist workers default to one."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
