-- Runs once, when the compose stack's PostgreSQL volume is initialised: the MLflow tracking
-- server keeps its runs and model registry in a database of its own, next to the service
-- database (POSTGRES_DB, created by the image). The server migrates its schema at start-up.
CREATE DATABASE mlflow OWNER creditops;
