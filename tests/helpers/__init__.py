"""Helpers the test modules share (fixtures live in tests/conftest.py). A test module imports
from here, never from another test module or from conftest."""
