"""Shape checks that tell a student what to fix.

`check_shapes` compares every tensor with a pattern of dimension letters and
raises one `ValueError` that names the function, the argument, the expected
shape (letters and numbers) and the shape it got::

    check_shapes("lstm_cell", x=(x, "B D"), h=(h, "B H"), weight_hh=(weight_hh, "4H H"))

A pattern is a space-separated list of dimensions: a letter (``B``, ``H``)
binds on first sight and must agree everywhere after; a number with a letter
(``4H``) is a multiple of that letter; a plain number (``1``) is fixed; ``*``
is any size.
"""

from __future__ import annotations

import re
from functools import lru_cache

import torch
from torch import Tensor

_DIM = re.compile(r"^(\d*)([A-Za-z_][A-Za-z_0-9]*)$|^(\d+)$|^\*$")


@lru_cache(maxsize=256)  # patterns are few; cells check them at every time step
def _parse(pattern: str) -> tuple[tuple[int, str | None], ...]:
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


def _expected(dims: tuple[tuple[int, str | None], ...], sizes: dict[str, int]) -> tuple[str, str]:
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
        if not isinstance(tensor, Tensor):
            raise TypeError(
                f"{function}: {name} should be a torch.Tensor of shape ({', '.join(pattern.split())}), "
                f"got {type(tensor).__name__}"
            )
        dims = _parse(pattern)
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
    return sizes


def check_lengths(function: str, lengths: Tensor | None, batch: int, time: int) -> None:
    """Check that `lengths` is None or an integer tensor (B,) with 1 <= length <= T."""
    if lengths is None:
        return
    check_shapes(function, lengths=(lengths, "B"))
    if lengths.shape[0] != batch:
        raise ValueError(f"{function}: lengths has {lengths.shape[0]} entries but the batch has B={batch} sequences")
    if lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise TypeError(f"{function}: lengths should hold integers (torch.long), got {lengths.dtype}")
    if len(lengths) and (int(lengths.min()) < 1 or int(lengths.max()) > time):
        raise ValueError(
            f"{function}: every length must be between 1 and T={time}, got {lengths.tolist()}"
        )
