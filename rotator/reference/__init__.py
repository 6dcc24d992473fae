"""Reference documentation generated from the code, never kept by hand.

The docs site's hook (docs/_hooks/reference.py), `rotator schema` and
`rotator help` call these; tests compare the published copies with them.
"""
