"""The package's version, in a module of its own: `transport` (the User-Agent) reads it without
importing the package root, whose type-checking imports name `rotator.plugin` (a cycle)."""

__version__ = "0.1.0"
