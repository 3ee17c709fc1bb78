"""Pure domain types: score scaling, the decision policy, decisions and reasons.

Must not import mlflow, sqlalchemy, fastapi or typer.
"""
