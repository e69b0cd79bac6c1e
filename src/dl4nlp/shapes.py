"""Shape checks that tell a student what to fix, without crowding out the math.

A function declares the shape of each argument above its ``def``; the body then
starts with its equation::

    @shapes(weight_ih="4H D", weight_hh="4H H", bias_ih="4H", bias_hh="4H", x="B D", state=("B H", "B H"))
    def lstm_cell(x, state, weight_ih, weight_hh, bias_ih, bias_hh): ...

Every call checks the arguments in the order the keywords are given and raises
one `ValueError` that names the function, the argument, the expected shape
(letters and numbers) and the shape it got::

    lstm_cell: state[0] should have shape (B, H) = (2, 5), but it has shape (2, 6) (does not match).
    Known sizes so far: H=5, D=4, B=2

A pattern is a space-separated list of dimensions: a letter (``B``, ``H``)
binds on first sight and must agree everywhere after; a number with a letter
(``4H``) is a multiple of that letter; a plain number (``1``) is fixed; ``*``
is any size. Besides a pattern string, an argument can be declared as

- a tuple of declarations, for a tuple argument: ``state=("B H", "B H")``;
- ``optional(declaration)``, for an argument that may be None;
- ``Lengths()``, for sequence lengths: an integer tensor (B,) with 1 <= length <= T.

`check_shapes` and `check_lengths` do the same checks inside a function body,
e.g. in a module's ``forward``, where the sizes come from the module itself.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar, Union

import torch
from torch import Tensor

_DIM = re.compile(r"^(\d*)([A-Za-z_][A-Za-z_0-9]*)$|^(\d+)$|^\*$")
Dims = tuple[tuple[int, Union[str, None]], ...]  # "4H D" -> ((4, "H"), (1, "D")); 7 -> (7, None); * -> (0, None)
F = TypeVar("F", bound=Callable[..., Any])


@lru_cache(maxsize=256)  # patterns are few; check_shapes meets them at every time step
def _parse(pattern: str) -> Dims:
    """Split "4H D" into [(4, "H"), (1, "D")]; a fixed size is (n, None), "*" is (0, None)."""
    dims = []
    for token in pattern.split():
        match = _DIM.match(token)
        if match is None:
            raise ValueError(f"bad dimension {token!r} in shape pattern {pattern!r}")
        multiple, letter, fixed = match.groups()
        if letter is not None:
            dims.append((int(multiple or 1), letter))
        elif fixed is not None:
            dims.append((int(fixed), None))
        else:
            dims.append((0, None))
    return tuple(dims)


def _expected(dims: Dims, sizes: dict[str, int]) -> tuple[str, str]:
    """Render the expected shape with letters, e.g. "(4H, D)", and with numbers, e.g. "(32, 5)"."""
    letters, numbers = [], []
    for multiple, letter in dims:
        if letter is None:
            letters.append(str(multiple) if multiple else "*")
            numbers.append(letters[-1])
        else:
            letters.append(f"{multiple if multiple > 1 else ''}{letter}")
            numbers.append(str(multiple * sizes[letter]) if letter in sizes else letters[-1])
    return f"({', '.join(letters)})", f"({', '.join(numbers)})"


def _check_tensor(function: str, name: str, tensor: object, pattern: str, dims: Dims,
                  sizes: dict[str, int]) -> None:
    """Check one tensor against its parsed pattern; bind new letters in `sizes`."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{function}: {name} should be a torch.Tensor of shape ({', '.join(pattern.split())}), "
                        f"got {type(tensor).__name__}")
    problem = None
    if tensor.dim() != len(dims):
        problem = f"has {tensor.dim()} dimensions instead of {len(dims)}"
    else:
        for size, (multiple, letter) in zip(tensor.shape, dims):
            if letter is None:
                if multiple and size != multiple:
                    problem = "does not match"
            elif letter in sizes:
                if size != multiple * sizes[letter]:
                    problem = "does not match"
            elif size % multiple:
                problem = f"has a size that is not a multiple of {multiple}"
            else:
                sizes[letter] = size // multiple
            if problem:
                break
    if problem:
        with_letters, with_numbers = _expected(dims, sizes)
        raise ValueError(
            f"{function}: {name} should have shape {with_letters} = {with_numbers}, "
            f"but it has shape {tuple(tensor.shape)} ({problem}). Known sizes so far: "
            + (", ".join(f"{k}={v}" for k, v in sizes.items()) or "none")
        )


def _check_length_values(function: str, name: str, lengths: Tensor, time: int) -> None:
    """Integers, each between 1 and T."""
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise TypeError(f"{function}: {name} should hold integers (torch.long), got {lengths.dtype}")
    if len(lengths) and (int(lengths.min()) < 1 or int(lengths.max()) > time):
        raise ValueError(f"{function}: every length must be between 1 and T={time}, got {lengths.tolist()}")


def check_shapes(function: str, /, **arguments: tuple[Tensor, str]) -> dict[str, int]:
    """Check tensors against shape patterns; return the sizes bound to each letter.

    Args: function, the name used in the error message; each keyword is an
      argument name mapped to (tensor, pattern), checked in the order given.
    Returns: {letter: size} for every letter seen.
    Raises: TypeError if an argument is not a tensor; ValueError naming the
      expected and actual shape if a shape does not match.
    """
    sizes: dict[str, int] = {}
    for name, (tensor, pattern) in arguments.items():
        _check_tensor(function, name, tensor, pattern, _parse(pattern), sizes)
    return sizes


def check_lengths(function: str, lengths: Tensor | None, batch: int, time: int) -> None:
    """Check that `lengths` is None or an integer tensor (B,) with 1 <= length <= T."""
    if lengths is None:
        return
    check_shapes(function, lengths=(lengths, "B"))
    if lengths.shape[0] != batch:
        raise ValueError(f"{function}: lengths has {lengths.shape[0]} entries but the batch has B={batch} sequences")
    _check_length_values(function, "lengths", lengths, time)


# --- declarations for the @shapes decorator ---------------------------------------------


@dataclass(frozen=True)
class Lengths:
    """Declares sequence lengths: an integer tensor (batch,) with 1 <= length <= time.

    `batch` and `time` are letters; `time` must be bound by an argument checked before.
    """

    batch: str = "B"
    time: str = "T"

    def check(self, function: str, name: str, value: object, sizes: dict[str, int]) -> None:
        _check_tensor(function, name, value, self.batch, _parse(self.batch), sizes)
        _check_length_values(function, name, value, sizes[self.time])


@dataclass(frozen=True)
class _Optional:
    """Declares an argument that may be None; anything else must fit `inner`."""

    inner: Any

    def check(self, function: str, name: str, value: object, sizes: dict[str, int]) -> None:
        if value is not None:
            self.inner.check(function, name, value, sizes)


@dataclass(frozen=True)
class _Pattern:
    """Declares one tensor by a pattern such as "4H D" (parsed once, here)."""

    pattern: str
    dims: Dims = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", _parse(self.pattern))  # raises on a bad pattern, at decoration time

    def check(self, function: str, name: str, value: object, sizes: dict[str, int]) -> None:
        _check_tensor(function, name, value, self.pattern, self.dims, sizes)


@dataclass(frozen=True)
class _Tuple:
    """Declares a tuple argument, e.g. an LSTM state (h, c); its parts are named name[0], name[1], ..."""

    parts: tuple[Any, ...]

    def check(self, function: str, name: str, value: object, sizes: dict[str, int]) -> None:
        expected = f"{function}: {name} should be a tuple of {len(self.parts)} tensors"
        if not isinstance(value, (tuple, list)):
            raise TypeError(f"{expected}, got {type(value).__name__}")
        if len(value) != len(self.parts):
            raise TypeError(f"{expected}, got a {type(value).__name__} of {len(value)}")
        for index, (part, item) in enumerate(zip(self.parts, value)):
            part.check(function, f"{name}[{index}]", item, sizes)


def optional(declaration: Any) -> _Optional:
    """Declare an argument of `@shapes` that may be None, e.g. ``lengths=optional(Lengths())``."""
    return _Optional(_declaration(declaration))


def _declaration(declaration: Any) -> Any:
    """A pattern string, a tuple of declarations, `optional(...)` or `Lengths(...)`, as a checker."""
    if isinstance(declaration, str):
        return _Pattern(declaration)
    if isinstance(declaration, tuple):
        return _Tuple(tuple(_declaration(part) for part in declaration))
    if isinstance(declaration, (Lengths, _Optional)):
        return declaration
    raise TypeError(f"a shape declaration is a pattern string such as 'B D', a tuple of them, optional(...) "
                    f"or Lengths(...); got {declaration!r}")


def _letters(checker: Any) -> set[str]:
    """The letters a declaration binds."""
    if isinstance(checker, _Pattern):
        return {letter for _, letter in checker.dims if letter is not None}
    if isinstance(checker, _Tuple):
        return set().union(*(_letters(part) for part in checker.parts))
    if isinstance(checker, _Optional):
        return set()  # a None binds nothing
    return {checker.batch}


def shapes(**declarations: Any) -> Callable[[F], F]:
    """Check a function's arguments against shape declarations before every call.

    Args: each keyword names a parameter of the decorated function and declares it:
      a pattern ("B D", "4H D", "B T D"), a tuple of declarations for a tuple argument,
      `optional(...)` for an argument that may be None, or `Lengths()` for sequence
      lengths. They are checked in the order given, with one set of letters.
    Returns: the decorator. The decorated function keeps its name, signature and
      docstring (functools.wraps); ``__wrapped__`` is the function without checks.
    Raises (when called): TypeError if an argument is not a tensor (or a tuple of
      them); ValueError naming the function, the argument, the expected shape in
      letters and numbers, and the actual shape.
    """
    checkers = {name: _declaration(declaration) for name, declaration in declarations.items()}
    bound: set[str] = set()
    for checker in checkers.values():  # a Lengths needs its time letter from an earlier argument
        if isinstance(checker, _Optional) and isinstance(checker.inner, Lengths):
            checker = checker.inner
        if isinstance(checker, Lengths) and checker.time not in bound:
            raise ValueError(f"Lengths(time={checker.time!r}) needs an argument declared before it that binds "
                             f"{checker.time!r}, e.g. x='B {checker.time} D'")
        bound |= _letters(checker)

    def decorate(function: F) -> F:
        parameters = inspect.signature(function).parameters
        unknown = [name for name in checkers if name not in parameters]
        if unknown:
            raise TypeError(f"@shapes declares {unknown}, which {function.__qualname__} has no parameter for")
        positional = [name for name, parameter in parameters.items()
                      if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)]
        # Where each argument is found, worked out once, not at every call: by position if it
        # can be passed by position, else by keyword; its default if it is not passed at all.
        plan = tuple((name, positional.index(name) if name in positional else None, parameters[name].default,
                      checker) for name, checker in checkers.items())
        function_name = function.__name__

        @functools.wraps(function)
        def checked(*args: Any, **kwargs: Any) -> Any:
            sizes: dict[str, int] = {}
            for name, position, default, checker in plan:
                if position is not None and position < len(args):
                    value = args[position]
                else:
                    value = kwargs.get(name, default)
                    if value is inspect.Parameter.empty:  # missing: let Python's own TypeError say so
                        break
                checker.check(function_name, name, value, sizes)
            return function(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate


__all__ = ["Lengths", "check_lengths", "check_shapes", "optional", "shapes"]
