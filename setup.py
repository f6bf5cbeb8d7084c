"""Shim for tools that still look for setup.py; metadata lives in setup.cfg."""

from setuptools import setup

setup()
