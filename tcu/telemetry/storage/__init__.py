"""Telemetry storage: the durable outbox (SQLite) and the key files of the vehicle identity.

What outlives a process; kept apart from the codec, which has no state.
"""
