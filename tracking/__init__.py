"""MLflow, shared by the pipeline and serving: `store` (runs, retries) and `registry` (models, versions, aliases)."""
