# progattr: runs the training flow (or a Prefect worker) with the same install steps as the Makefile:
# a venv at /app/.venv, pip upgraded first (the stock pip never resolves the pinned set), then
# `pip install -e .`. Dependencies are a layer of their own, before the source.
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

# CPU-only torch wheels keep the image small; set to "" to get PyPI's default (CUDA) builds.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

# Prefect's settings come from [tool.prefect] in /app/pyproject.toml (the working directory).
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/app/.venv/bin:$PATH

RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 progattr \
    && mkdir /app && chown progattr:progattr /app
WORKDIR /app
USER progattr

# Dependency layer: only pyproject.toml, with empty packages so the editable install resolves the
# pinned dependencies; rebuilt only when pyproject.toml changes.
COPY --chown=progattr:progattr pyproject.toml README.md ./
RUN python -m venv .venv \
    && .venv/bin/python -m pip install -q --upgrade pip \
    && mkdir -p progattr_core tracking tasks serving flows progattr \
    && for p in progattr_core tracking tasks serving flows progattr; do touch $p/__init__.py; done \
    && .venv/bin/python -m pip install -q ${TORCH_INDEX:+--extra-index-url $TORCH_INDEX} -e . \
    && rm -rf progattr_core tracking tasks serving flows progattr

# Source layer. .git stays out of the image (.dockerignore): registered versions name the commit
# given as the GIT_COMMIT build arg instead (declared here, so a new commit keeps the dependency layer).
ARG GIT_COMMIT=unknown
ENV PROGATTR_GIT_COMMIT=$GIT_COMMIT
COPY --chown=progattr:progattr . .
RUN .venv/bin/python -c "import progattr, progattr_core, torch, torchvision, prefect, mlflow, great_expectations" \
    && git config --global --add safe.directory /app

EXPOSE 8080
ENTRYPOINT ["progattr"]
CMD ["demo"]
