"""Use cases: each combines the core with the adapters (registry, store, alerts) and owns
its transaction.

Entry points (CLI, API, worker) build an :class:`~creditops.services.context.AppContext`
and call one function here; services raise domain errors from :mod:`creditops.errors`,
never HTTP or exit codes. Modules by what they own: ``training``, ``validation``,
``scoring`` (files and the what-if), ``model_versions`` (load, list, promote), ``serving``
(which version answers), ``decisions`` (decide, log, count; the kill switch), ``outcomes``,
``reviews``, ``access`` (API keys, the audit trail), ``archive`` (export, retention) and
``monitoring`` (checks, stored reports, alerts). Must not import ``api``, ``cli*`` or
``worker``.
"""
