"""The online service: one prediction route per article, following the registry's `champion` alias.

`app` builds the FastAPI application, `follower` keeps each worker's models in step with the registry
(`tracking.registry`), `inference` turns request bytes into predictions exactly as training
preprocessed images, and `server` starts the uvicorn workers (`progattr serve`).
"""
