"""The leaddb benchmark (`nox -s bench`): leaddb against raw asyncpg and its peers.

``bench.run`` is the single entry point; it writes ``docs/benchmarks.md``.
"""
