"""Dataplug's ``formats.metabolomics``: imzML."""
