"""dl4nlp.shapes: the @shapes decorator and check_shapes / check_lengths, with their messages."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import Tensor

from dl4nlp import rnn
from dl4nlp.shapes import Lengths, check_lengths, check_shapes, optional, shapes


@shapes(weight="4H D", x="B D", state=("B H", "B H"))
def gated(x: Tensor, state: tuple[Tensor, Tensor], weight: Tensor) -> Tensor:
    """A stand-in cell: (B, D) @ (D, 4H) -> (B, 4H)."""
    return x @ weight.T


@shapes(x="B T D", lengths=optional(Lengths()))
def layer(x: Tensor, scale: float = 1.0, lengths: Tensor | None = None, *, bias: Tensor | None = None) -> Tensor:
    return x * scale


@shapes(x="B T D", bias=optional("D"))
def with_keyword_only(x: Tensor, *, bias: Tensor | None = None) -> Tensor:
    return x if bias is None else x + bias


@shapes(tokens="B T", lengths=Lengths())
def needs_lengths(tokens: Tensor, lengths: Tensor) -> Tensor:
    return tokens


def state(batch: int, hidden: int) -> tuple[Tensor, Tensor]:
    return torch.zeros(batch, hidden), torch.zeros(batch, hidden)


def test_right_shapes_pass_through() -> None:
    x, weight = torch.randn(2, 3), torch.randn(8, 3)
    assert torch.equal(gated(x, state(2, 2), weight), x @ weight.T)
    assert torch.equal(gated(x, weight=weight, state=state(2, 2)), x @ weight.T)  # by keyword
    assert torch.equal(layer(torch.ones(2, 4, 3), 2.0, torch.tensor([4, 1])), torch.full((2, 4, 3), 2.0))


def test_wrong_rank_names_function_argument_and_both_shapes() -> None:
    message = (r"^gated: x should have shape \(B, D\) = \(B, 3\), but it has shape \(2, 5, 3\) "
               r"\(has 3 dimensions instead of 2\)\. Known sizes so far: H=2, D=3$")
    with pytest.raises(ValueError, match=message):
        gated(torch.randn(2, 5, 3), state(2, 2), torch.randn(8, 3))


def test_mismatched_letter() -> None:
    with pytest.raises(ValueError, match=r"^gated: x should have shape \(B, D\) = \(2, 3\), but it has shape "
                                         r"\(2, 4\) \(does not match\)"):
        gated(torch.randn(2, 4), state(2, 2), torch.randn(8, 3))


def test_multiple_of_a_letter() -> None:
    with pytest.raises(ValueError, match=r"^gated: weight should have shape \(4H, D\) = \(4H, D\), but it has "
                                         r"shape \(6, 3\) \(has a size that is not a multiple of 4\)"):
        gated(torch.randn(2, 3), state(2, 2), torch.randn(6, 3))


def test_tuple_argument_names_its_parts() -> None:
    with pytest.raises(ValueError, match=r"^gated: state\[1\] should have shape \(B, H\) = \(2, 2\), "
                                         r"but it has shape \(2, 3\)"):
        gated(torch.randn(2, 3), (torch.zeros(2, 2), torch.zeros(2, 3)), torch.randn(8, 3))
    with pytest.raises(TypeError, match=r"^gated: state should be a tuple of 2 tensors, got Tensor$"):
        gated(torch.randn(2, 3), torch.zeros(2, 2), torch.randn(8, 3))
    with pytest.raises(TypeError, match=r"^gated: state should be a tuple of 2 tensors, got a tuple of 3$"):
        gated(torch.randn(2, 3), (torch.zeros(2, 2),) * 3, torch.randn(8, 3))
    with pytest.raises(TypeError, match=r"^gated: state\[0\] should be a torch.Tensor of shape \(B, H\), got list"):
        gated(torch.randn(2, 3), ([[0.0, 0.0]], torch.zeros(1, 2)), torch.randn(8, 3))


def test_none_is_allowed_only_where_declared_optional() -> None:
    x = torch.randn(2, 4, 3)
    assert torch.equal(layer(x), x) and torch.equal(layer(x, lengths=None), x)
    assert torch.equal(with_keyword_only(x), x)
    assert torch.equal(with_keyword_only(x, bias=torch.ones(3)), x + 1)
    with pytest.raises(ValueError, match=r"^with_keyword_only: bias should have shape \(D\) = \(3\)"):
        with_keyword_only(x, bias=torch.ones(4))
    with pytest.raises(TypeError, match=r"^needs_lengths: lengths should be a torch.Tensor of shape \(B\), "
                                        r"got NoneType"):
        needs_lengths(torch.zeros(2, 4, dtype=torch.long), None)


@pytest.mark.parametrize("lengths, message", [
    (torch.tensor([0, 4]), r"^layer: every length must be between 1 and T=4, got \[0, 4\]$"),
    (torch.tensor([5, 1]), r"^layer: every length must be between 1 and T=4, got \[5, 1\]$"),
    (torch.tensor([4, 4, 4]), r"^layer: lengths should have shape \(B\) = \(2\), but it has shape \(3,\)"),
    (torch.tensor([[4, 4]]), r"^layer: lengths should have shape \(B\) = \(2\), but it has shape \(1, 2\)"),
])
def test_lengths_out_of_range_or_of_the_wrong_shape(lengths: Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        layer(torch.randn(2, 4, 3), lengths=lengths)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_lengths_must_be_integers(dtype: torch.dtype) -> None:
    with pytest.raises(TypeError, match=rf"^layer: lengths should hold integers \(torch.long\), got {dtype}$"):
        layer(torch.randn(2, 4, 3), lengths=torch.tensor([4, 1]).to(dtype))
    layer(torch.randn(2, 4, 3), lengths=torch.tensor([4, 1], dtype=torch.int32))  # any integer type will do


def test_a_missing_argument_gets_pythons_own_error() -> None:
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'weight'"):
        gated(torch.randn(2, 3), state(2, 2))


def test_declarations_are_checked_when_decorating() -> None:
    with pytest.raises(TypeError, match=r"declares \['y'\].*no parameter"):
        shapes(y="B D")(lambda x: x)
    with pytest.raises(ValueError, match="bad dimension '4-H'"):
        shapes(x="4-H D")
    with pytest.raises(ValueError, match=r"Lengths\(time='T'\) needs an argument declared before it"):
        shapes(lengths=Lengths(), x="B T D")
    with pytest.raises(TypeError, match="a shape declaration is"):
        shapes(x=["B", "D"])


def test_decorated_functions_keep_name_signature_docstring_and_source() -> None:
    assert gated.__name__ == "gated" and gated.__doc__.startswith("A stand-in cell")
    assert str(inspect.signature(gated)) == str(inspect.signature(gated.__wrapped__))
    assert "x: 'Tensor'" in str(inspect.signature(gated))
    assert inspect.getsource(gated).startswith("@shapes(weight=")
    for name in ("rnn_cell", "lstm_cell", "gru_cell", "bidirectional_layer", "classify"):
        function = getattr(rnn, name)
        assert function.__name__ == name and "Args:" in function.__doc__
        assert inspect.signature(function) == inspect.signature(function.__wrapped__)
        assert list(inspect.signature(function).parameters)[0] in ("x", "cell", "tokens")
        source = inspect.getsource(function)
        assert source.startswith("@shapes(") and "check_" not in source  # the body starts with its math


def test_check_shapes_and_check_lengths_still_work_inline() -> None:
    assert check_shapes("f", x=(torch.zeros(2, 3, 4), "B T D"), w=(torch.zeros(8, 4), "2H D")) == \
        {"B": 2, "T": 3, "D": 4, "H": 4}
    with pytest.raises(ValueError, match=r"^f: w should have shape \(2H, D\) = \(8, 4\), but it has shape \(8, 5\)"):
        check_shapes("f", x=(torch.zeros(2, 3, 4), "B T D"), w=(torch.zeros(8, 5), "2H D"))
    check_lengths("f", None, 2, 3)
    with pytest.raises(ValueError, match=r"^f: lengths has 3 entries but the batch has B=2 sequences$"):
        check_lengths("f", torch.tensor([1, 2, 3]), 2, 3)
    with pytest.raises(ValueError, match=r"between 1 and T=3"):
        check_lengths("f", torch.tensor([1, 4]), 2, 3)
