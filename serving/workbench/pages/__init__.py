"""The workbench's routes, one module per page (all ``include_in_schema=False``: the API's schema stays the API's)."""
