"""intentcraft: build calibrated intent routers from one YAML recipe."""

__version__ = "0.1.0"
