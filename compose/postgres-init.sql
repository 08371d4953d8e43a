-- One PostgreSQL server, two databases: Prefect's (POSTGRES_DB=prefect) and MLflow's.
CREATE DATABASE mlflow;
