"""What the data is and how it becomes model input: the spec (the data contract), reading
and checking training and scoring files, the feature encoder shared by training, batch
scoring and the HTTP hot path, and the reference profile training writes and monitoring
reads.

May import ``domain`` and ``errors``; must not import ``modeling``, ``monitoring`` or any
adapter, service or entry point, nor fastapi, sqlalchemy, mlflow or typer.
"""
