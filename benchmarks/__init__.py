"""Benchmarks behind `make bench`, each side by side with its baseline (docs/benchmarks.md)."""

from tests.support.hub_harness import HubProcess

# Benchmarks measure the hub as a site runs it: without the test suite's quicker polls of
# JupyterHub's internals (tests/support/hub_harness.py, PROMPT_POLLS_CONFIG).
HubProcess.prompt_polls = False
