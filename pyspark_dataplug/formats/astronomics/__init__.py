"""Dataplug's ``formats.astronomics``: MeasurementSets."""
