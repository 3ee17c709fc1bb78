"""Adapter to MLflow, creditops' store of record for runs, model versions and lineage.

This is the only package that imports mlflow (lazily, on first use). Its modules:
:mod:`~creditops.registry.mlflow_registry` (:class:`ModelRegistry`: registration, queries and
aliases), :mod:`~creditops.registry.records` (its value types and recorded names),
:mod:`~creditops.registry.validation` (input checks), :mod:`~creditops.registry.mlflow_store` (the
MLflow client and store set-up), :mod:`~creditops.registry.tracking` (training runs) and
:mod:`~creditops.registry.bundles` (verified downloads).
"""
