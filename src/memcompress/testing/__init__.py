"""Test support shared by the test suite and the benchmarks (not used by the product itself): a local
OpenAI-compatible server over real HTTP, the invariant checker, event factories, worker processes.

Imported only by tests, benchmarks and the ``dev`` tooling; it may name the concrete adapters because it
inspects the stores from the outside.
"""
