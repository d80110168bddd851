"""The ``aftershock`` command line."""
