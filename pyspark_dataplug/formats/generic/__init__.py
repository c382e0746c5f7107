"""Dataplug's ``formats.generic``: plain text and CSV."""
