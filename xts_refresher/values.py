"""The base of the immutable value objects that every start-up pays for.

``dataclasses`` would cost a trading program's ``load_token`` about 8 ms (it imports
``inspect``, ``ast`` and ``dis``) and ``typing.NamedTuple`` about 4 ms (``typing``), against a
``json.load`` of about 20 ms; a class with ``__slots__`` whose attributes cannot be set after
``__init__`` costs nothing and is just as immutable. Only the built-ins are used here.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy honours the name
if TYPE_CHECKING:
    from typing import TypeVar

    F = TypeVar("F", bound="Frozen")


class Frozen:
    """Attributes set once, in ``__init__`` through ``_set``; equality and repr by value.

    Subclasses list their fields in ``__slots__``; names in ``_hidden`` are shown as ``…`` by
    repr, so a secret never reaches a log through a repr.
    """

    __slots__ = ()
    _hidden: tuple[str, ...] = ()

    def _set(self, **values: object) -> None:
        """Give each field its value; only ``__init__`` calls this."""
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def replaced(self: F, **changes: object) -> F:
        """A copy with ``changes`` (field names and their new values) made."""
        unknown = set(changes) - set(self._fields())
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)}")
        copy = object.__new__(type(self))
        copy._set(**{name: getattr(self, name) for name in self._fields()})
        copy._set(**changes)
        return copy

    def _fields(self) -> tuple[str, ...]:
        return tuple(name for cls in type(self).__mro__ for name in getattr(cls, "__slots__", ()))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: {name} cannot be set")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: {name} cannot be deleted")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self._fields())

    def __hash__(self) -> int:
        return hash(tuple(repr(getattr(self, n)) for n in self._fields()))

    def __repr__(self) -> str:
        shown = (
            f"{n}={'…' if n in self._hidden else repr(getattr(self, n))}" for n in self._fields()
        )
        return f"{type(self).__name__}({', '.join(shown)})"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``count`` and the noun it counts, as people write it: ``1 account``, ``3 accounts``
    (``nouns`` for a plural that is not ``noun`` + s)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"
