"""Measuring a model: metrics, calibration metrics and checks, the headline table and the model card."""
