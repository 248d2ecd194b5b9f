"""Fixtures of the toolkit tests (defined in :mod:`.clients`)."""

from .clients import start_service

__all__ = ["start_service"]
