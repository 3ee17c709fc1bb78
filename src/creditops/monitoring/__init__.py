"""Monitoring checks, pure: each is configuration + calculation + result + condition.

Owns drift (``drift/``: data and prediction drift and their statistics), performance drift
(``performance``), fairness in production (``fairness``) and the conditions every check
shares (``conditions``: levels, worst-of, hysteresis). Reads its inputs as arrays, frames,
reference profiles and count vectors; reading them from the decision log, storing results
and alerting are :mod:`creditops.services.monitoring`'s job. May import ``domain``,
``features`` and ``modeling``; must not import fastapi, sqlalchemy, mlflow, typer, httpx,
smtplib or any other creditops package.
"""
