"""One family per module; each registers itself with @register_model on import.

``zoo.api.list_models`` imports every module in this package, so a new family needs no
edit here.
"""
