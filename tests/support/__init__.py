"""What the test suites and the benchmarks share: a real hub (:mod:`.hub_harness`), the Docker
CLI helpers (:mod:`.docker_cli`), the workspace-cluster helpers (:mod:`.cluster_harness`) and
the one way to wait for a condition (:mod:`.waiting`).

Tests import it as ``support`` (``tests/`` is on pytest's ``pythonpath``, setup.cfg); the
benchmarks, run as ``python -m benchmarks.<name>`` from the repository root, as
``tests.support`` (``tests`` is a namespace package: it has no ``__init__.py``). Its modules
import each other relatively, so both names work.
"""
