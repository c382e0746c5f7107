"""Dataplug's ``formats.compressed``: gzip text (any format detects gzip from an object's bytes)."""
