"""The public surface is exactly what `__all__` lists (httpx's test of its own `__all__`)."""

from __future__ import annotations

import types

import pytest

import rotator
import rotator.backend_rules
import rotator.journal


def public_names(module: types.ModuleType, *, dunders: tuple[str, ...] = ()) -> list[str]:
    """Names a user can import from `module` (`dir`, so names a PEP 562 `__getattr__`
    loads on first use count too): not private, not a submodule (Python sets an
    attribute for each imported submodule), not typing machinery."""
    names = []
    for name in dir(module):
        if name.startswith("_") and name not in dunders:
            continue
        value = getattr(module, name)
        if isinstance(value, types.ModuleType) or name in ("annotations", "TYPE_CHECKING"):
            continue
        if getattr(value, "__module__", None) == "typing":  # `Any` for the lazy loader's annotations
            continue
        names.append(name)
    return sorted(names)


def test_rotator_all_is_exactly_the_public_names() -> None:
    assert sorted(rotator.__all__) == public_names(rotator, dunders=("__version__",))
    assert len(set(rotator.__all__)) == len(rotator.__all__)


def test_journal_all_is_exactly_the_public_names() -> None:
    assert sorted(rotator.journal.__all__) == public_names(rotator.journal)
    assert len(set(rotator.journal.__all__)) == len(rotator.journal.__all__)


def test_backend_rules_all_is_exactly_the_public_names() -> None:
    """The write rules a third-party backend imports (docs/plugins.md): every public name
    defined there (its imports, `Conflict` and the like, come from `rotator`)."""
    module = rotator.backend_rules
    defined = [n for n in public_names(module) if getattr(getattr(module, n), "__module__", None) == module.__name__]
    assert sorted(module.__all__) == defined
    assert {"key_change", "standby_change", "swap_change", "SlotFields"} <= set(rotator.backend_rules.__all__)


@pytest.mark.parametrize("module", [rotator, rotator.journal, rotator.backend_rules], ids=lambda m: m.__name__)
def test_every_listed_name_imports(module: types.ModuleType) -> None:
    for name in module.__all__:
        assert getattr(module, name) is not None, name
