"""The HTTP edge: a FastAPI application over the service layer (``create_app``)."""
