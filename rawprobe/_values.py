"""Immutable value records without dataclasses.

``dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis``, ``tokenize``...): about 13 ms
on a fresh interpreter, and each class it makes costs another 0.7 ms of generated code. The
records on the start-up path (symbols, planned events, record layouts) are small slotted
classes on this base instead: each sets its fields in its own ``__init__`` through
``object.__setattr__``, and the base gives them immutability, equality, hashing, ``repr``,
:meth:`Record.replace` and :meth:`Record.as_dict`.
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, TypeVar

    _RecordT = TypeVar("_RecordT", bound="Record")

__all__ = ["Record"]


class Record:
    """Base of the immutable records: equality, hashing, repr and dict conversion from slots."""

    __slots__: tuple[str, ...] = ()

    def _fields(self) -> Iterator[tuple[str, Any]]:
        for name in self.__slots__:
            yield name, getattr(self, name)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __hash__(self) -> int:
        return hash(tuple(value for _name, value in self._fields()))

    def __repr__(self) -> str:
        body = ", ".join(f"{name}={value!r}" for name, value in self._fields())
        return f"{type(self).__name__}({body})"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the class and the field values (the fields are set without
        ``__setattr__``, which records refuse)."""
        return _rebuild, (type(self), tuple(getattr(self, name) for name in self.__slots__))

    def replace(self: _RecordT, **changes: Any) -> _RecordT:
        """Return a copy with some fields changed.

        Args:
            **changes: Field names and their new values.

        Returns:
            A new record of the same type.

        Raises:
            TypeError: A name in ``changes`` is not a field.
        """
        unknown = set(changes) - set(self.__slots__)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
        values = dict(self._fields())
        values.update(changes)
        copy = object.__new__(type(self))
        for name, value in values.items():
            object.__setattr__(copy, name, value)
        return copy

    def as_dict(self) -> dict[str, Any]:
        """The record as a plain dict (nested records converted too), ready for JSON."""
        result: dict[str, Any] = {}
        for name, value in self._fields():
            if isinstance(value, Record):
                value = value.as_dict()
            elif isinstance(value, tuple):
                value = list(value)
            result[name] = value
        return result


def _rebuild(cls: type[_RecordT], values: tuple[Any, ...]) -> _RecordT:
    record = object.__new__(cls)
    for name, value in zip(cls.__slots__, values, strict=True):
        object.__setattr__(record, name, value)
    return record
