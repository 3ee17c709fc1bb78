"""Use cases: each combines the core with the registry/store adapters.

Entry points (CLI, API, worker) build an :class:`~creditops.services.context.AppContext`
and call one function here. Services raise domain errors from :mod:`creditops.errors`.
"""
