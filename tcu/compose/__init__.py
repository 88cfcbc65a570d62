"""Composition roots: where the TCU and the backend are put together.

The TCU's layers (``tcu.core``, ``tcu.events``, ``tcu.can``, ``tcu.vehicle``,
``tcu.services``, ``tcu.telemetry``, ``tcu.link``, ``tcu.runtime``) know a transport
interface, never ``cloud_stub``. The modules here are the places that wire a backend in:
the in-memory world that ``tcu replay`` and the scenarios use, the online replay through a
broker, and the relay that carries the in-memory world's messages across a real broker.
"""
