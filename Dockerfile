# progattr: runs the training flow (or a Prefect worker) with the same install steps as the Makefile:
# a venv at /app/.venv, pip upgraded to a pinned release, the hashed requirements.lock with --no-deps,
# then `pip install --no-deps -e .`. Dependencies are a layer of their own, before the source.
# The lock pins PyPI's torch (a CUDA build, ~6 GB in the venv; it runs on the CPU too), as `make setup` does.
#
#   docker build --build-arg GIT_COMMIT=$(git rev-parse HEAD) -t progattr .   # the commit lineage tags name
#   docker run --rm -v $PWD/data:/app/data -v $PWD/mlartifacts:/app/mlartifacts progattr demo
#   docker run --rm -e MLFLOW_TRACKING_URI=http://mlflow:5000 -e PREFECT_API_URL=http://prefect:4200/api \
#       progattr pipeline run --article tops --source s3://bucket/catalogue/tops
#   docker run --rm -e PREFECT_API_URL=http://prefect:4200/api --entrypoint prefect progattr \
#       worker start --pool progattr --type process
#   docker run --rm -p 8080:8080 -e MLFLOW_TRACKING_URI=http://mlflow:5000 progattr \
#       serve --host 0.0.0.0 --port 8080 --articles tops
FROM python:3.11-slim

# Prefect's settings come from [tool.prefect] in /app/pyproject.toml (the working directory).
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/app/.venv/bin:$PATH

RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 progattr \
    && mkdir /app && chown progattr:progattr /app
WORKDIR /app
USER progattr

# Dependency layer: the lock alone, rebuilt only when requirements.lock changes.
COPY --chown=progattr:progattr requirements.lock ./
RUN python -m venv .venv \
    && .venv/bin/python -m pip install -q --upgrade pip==26.3 \
    && .venv/bin/python -m pip install -q --require-hashes --no-deps -r requirements.lock

# Source layer. .git stays out of the image (.dockerignore): registered versions name the commit
# given as the GIT_COMMIT build arg instead (declared here, so a new commit keeps the dependency layer).
ARG GIT_COMMIT=unknown
ENV PROGATTR_GIT_COMMIT=$GIT_COMMIT
COPY --chown=progattr:progattr . .
RUN .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . && .venv/bin/python -m pip check \
    && .venv/bin/python -c "import progattr, progattr_core, torch, torchvision, prefect, mlflow, great_expectations" \
    && git config --global --add safe.directory /app

EXPOSE 8080
ENTRYPOINT ["progattr"]
CMD ["demo"]
