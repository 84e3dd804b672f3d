"""Vendor adapters behind one normalized interface (see :mod:`toolbag.providers.base`)."""
