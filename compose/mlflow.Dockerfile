# The MLflow tracking server of docker-compose.yml: the official image plus the PostgreSQL driver
# and boto3 (the server proxies artifacts to MinIO, so clients need no S3 credentials).
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir psycopg2-binary==2.9.10 boto3==1.43.117
