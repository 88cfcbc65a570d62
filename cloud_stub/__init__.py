"""Stub fleet backend: broker, ingest, registry, signed commands."""
