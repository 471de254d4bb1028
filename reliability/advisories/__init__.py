"""Vendored advisory data and the loopback OSV mirror that serves it (see osv_mirror.py)."""
