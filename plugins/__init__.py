"""rotator's built-in backends and consumers.

Installed as ``rotator_plugins`` and registered through the same entry points
(``rotator.backends`` / ``rotator.consumers``) that a third-party package uses.
"""
