"""tcu-sim: a model of an electric van's LTE connectivity module."""

__version__ = "0.1.0"
