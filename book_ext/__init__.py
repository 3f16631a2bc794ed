"""Sphinx extensions for the course site (loaded through _config.yml's sphinx.local_extensions)."""
