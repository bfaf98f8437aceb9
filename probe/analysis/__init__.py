"""Measurements on predictions and features: metrics, calibration, control tasks and the
cross-lingual analyses (retrieval, CKA, alignment, typology, correlation)."""
