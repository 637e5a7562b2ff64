"""Calibrated pCTR/pCVR models from ad logs, tracked and registered in MLflow."""
