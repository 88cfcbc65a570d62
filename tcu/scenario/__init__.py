"""Scenario suites: YAML files an engineer writes without Python, run in virtual time."""
