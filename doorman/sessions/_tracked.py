"""``TrackedDict``: a real ``dict`` that loads before first use and notes reads and writes.

``Session`` builds on it. Being a ``dict``, as Starlette's session is, a session
goes wherever a dict is wanted: ``json.dumps``, ``JSONResponse``,
``isinstance(x, dict)``, ``{**session}``. The data lives in the dict's own
storage, so C code that reads a dict directly sees it; such code also skips
Python overrides, which sets the rules here:

- Every method that reads or writes is overridden: it loads first (``_ensure``)
  and sets ``accessed``; a write that changes something sets ``modified``.
  Overriding ``__iter__`` sends ``dict(s)``, ``{**s}`` and ``f(**s)`` through
  ``keys()`` instead of the storage. ``json``'s C encoder still reads the size
  directly (``{}`` for a session not loaded yet), so sessions of in-process
  stores load when they are made, not on first access.
- Internal code uses the ``dict`` methods below, which change no flag.
- ``copy()``, ``|`` and ``copy.copy()`` give plain dicts, as Starlette's do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..exceptions import SessionDataError

if TYPE_CHECKING:
    from _collections_abc import dict_items, dict_keys, dict_values
    from typing import Self

__all__ = ["TrackedDict"]

# The dict's own methods, which read and write the storage and no flag.
_getitem = dict.__getitem__
_setitem = dict.__setitem__
_delitem = dict.__delitem__
_contains = dict.__contains__
_len = dict.__len__
_get = dict.get
_items = dict.items
_update = dict.update
_clear = dict.clear


def _check_key(name: object) -> None:
    # JSON would turn 1 into "1" silently, and refuse a tuple only when saving.
    if type(name) is not str:
        raise SessionDataError(f"session keys must be str, not {type(name).__name__}")


class TrackedDict(dict[str, Any]):
    """A ``dict[str, Any]`` whose subclass loads it in ``_ensure()`` on first use."""

    accessed = modified = False
    _loaded = True

    def _ensure(self) -> None:
        """Load the data; the subclass knows from where."""
        self._loaded = True

    def _open(self) -> None:
        """Load if not done yet, and note the access: what every read and write does first."""
        if not self._loaded:
            self._ensure()
        self.accessed = True

    def mark_accessed(self) -> None:
        """Note a read; Starlette's ``request.session`` calls it, so ``Vary: Cookie`` is sent."""
        self.accessed = True

    def mark_modified(self) -> None:
        """Save this session, e.g. after changing a list or dict inside it."""
        self._open()
        self.modified = True

    # -- reading (the first two inline _open: they are the hot path) ---------------------

    def __getitem__(self, name: str) -> Any:
        if not self._loaded:
            self._ensure()
        self.accessed = True
        return _getitem(self, name)

    def get(self, name: str, default: Any = None, /) -> Any:
        if not self._loaded:
            self._ensure()
        self.accessed = True
        return _get(self, name, default)

    def __contains__(self, name: object) -> bool:
        self._open()
        return _contains(self, name)

    def __len__(self) -> int:
        self._open()
        return _len(self)

    def __iter__(self) -> Iterator[str]:
        self._open()
        return dict.__iter__(self)

    def __reversed__(self) -> Iterator[str]:
        self._open()
        return dict.__reversed__(self)

    def keys(self) -> dict_keys[str, Any]:
        self._open()
        return dict.keys(self)

    def values(self) -> dict_values[str, Any]:
        self._open()
        return dict.values(self)

    def items(self) -> dict_items[str, Any]:
        self._open()
        return _items(self)

    def __eq__(self, other: object) -> bool:
        self._open()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        self._open()
        return dict.__ne__(self, other)

    def copy(self) -> dict[str, Any]:
        """A plain ``dict`` of the data."""
        self._open()
        return dict(_items(self))

    def __or__(self, other: Any, /) -> dict[Any, Any]:
        if not isinstance(other, dict):
            return NotImplemented
        merged: dict[Any, Any] = self.copy()
        merged.update(other)
        return merged

    def __ror__(self, other: Any, /) -> dict[Any, Any]:
        if not isinstance(other, dict):
            return NotImplemented
        merged: dict[Any, Any] = dict(other)
        merged.update(self.copy())
        return merged

    def __reduce__(self) -> tuple[Any, ...]:
        # copy.copy(), copy.deepcopy() and pickle get the data, never the request's session.
        return (dict, (self.copy(),))

    # -- writing ------------------------------------------------------------------------

    def __setitem__(self, name: str, value: Any) -> None:
        _check_key(name)
        self._open()
        self.modified = True
        _setitem(self, name, value)

    def __delitem__(self, name: str) -> None:
        self._open()
        _delitem(self, name)
        self.modified = True

    def update(self, *args: Any, **kwargs: Any) -> None:
        incoming = dict(*args, **kwargs)
        for name in incoming:
            _check_key(name)
        self._open()
        if incoming:
            _update(self, incoming)
            self.modified = True

    def __ior__(self, other: Any, /) -> Self:  # type: ignore[override]
        self.update(other)
        return self

    def setdefault(self, name: str, default: Any = None, /) -> Any:
        self._open()
        if not _contains(self, name):
            _check_key(name)
            _setitem(self, name, default)
            self.modified = True
            return default
        return _getitem(self, name)

    def pop(self, name: str, /, *default: Any) -> Any:
        self._open()
        if _contains(self, name):
            self.modified = True
        return dict.pop(self, name, *default)

    def popitem(self) -> tuple[str, Any]:
        self._open()
        item = dict.popitem(self)
        self.modified = True
        return item

    def clear(self) -> None:
        self._open()
        if _len(self):
            _clear(self)
            self.modified = True

    @classmethod
    def fromkeys(cls, keys: Iterable[Any], value: Any = None, /) -> dict[Any, Any]:
        """A plain ``dict``: a session comes only from a middleware."""
        return dict.fromkeys(keys, value)
