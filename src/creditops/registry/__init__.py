"""Adapter to MLflow, creditops' store of record for runs, model versions and lineage.

This is the only package that imports mlflow (lazily, on first use). Its modules:
:mod:`~creditops.registry.mlflow_registry` (:class:`ModelRegistry`: registration, queries and
aliases), :mod:`~creditops.registry.records` (its value types and recorded names),
:mod:`~creditops.registry.validation` (input checks), :mod:`~creditops.registry.mlflow_store` (the
MLflow client and store set-up), :mod:`~creditops.registry.tracking` (training runs),
:mod:`~creditops.registry.bundles` (verified downloads) and
:mod:`~creditops.registry.pyfunc_model` (each version as an MLflow pyfunc model: what
``mlflow.pyfunc.load_model`` and ``mlflow models serve`` load).
"""
