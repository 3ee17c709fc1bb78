"""Adapter to MLflow, creditops' store of record for runs, model versions and lineage.

This is the only package that imports mlflow (lazily, on first use). See
:mod:`creditops.registry.mlflow_registry` for :class:`ModelRegistry` and its result types.
"""
