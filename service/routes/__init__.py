"""The package of routes: one module per surface."""
