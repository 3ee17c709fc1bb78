"""creditops: MLOps for credit-risk (probability-of-default) models.

Layering (imports point down only):
  entry points (cli, api, worker) -> services -> core (domain, features, modeling,
  monitoring, reporting) and adapters (registry, store).
Core packages never import mlflow, sqlalchemy, fastapi or typer.
"""

__version__ = "0.1.0"
