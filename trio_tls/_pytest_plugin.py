"""pytest plugin for trio_tls (registered through the ``pytest11`` entry point).

The fixtures arrive with the testing-kit work; this module must exist from the start
because installing the package registers the entry point.
"""
