"""Dataplug's ``formats.geospatial``: LAS/LAZ (``las``, or ``laspc`` as Dataplug named it), COPC and COG."""
