"""Helpers shared by the tests (and by the benchmarks in ``tools/``, which put ``tests/`` on their path).

``tests/`` is on ``sys.path`` while pytest runs (``tests/conftest.py`` is a rootdir conftest), so a test
imports them as ``from helpers.weights import randomize_weights``.
"""
