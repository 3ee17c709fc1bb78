"""Pure domain types: score scaling, the decision policy, API-key scopes and principals,
time windows.

Must not import any other creditops package but :mod:`creditops.errors`, nor mlflow,
sqlalchemy, fastapi, typer or any network library.
"""
