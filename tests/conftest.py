"""Test-session setup: Triton kernels run through Triton's CPU interpreter (the tests have no GPU).

The interpreter is chosen when a kernel is defined, and `triton.language`'s own helpers are defined when
`triton` is first imported (transformers may import it), so the switch is set here, before any test module
imports anything.

Shared by the engine tests: `sharpen` and the `tiny` fixture (the tiny random model, sharpened).
"""

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402  (after the switch above)
import torch  # noqa: E402


def sharpen(model: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Redraw the non-norm weights with a larger std: the tiny models' 0.02-std init gives near-uniform
    logits and one repeated token; larger weights give varied greedy outputs, so token-identity tests bite."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


@pytest.fixture()
def tiny():
    """(model, tokenizer): the tiny test model, sharpened."""
    from ponder.model import load_model

    model, tok = load_model("tiny")
    return sharpen(model), tok


def _patch_triton_interpreter_for_numpy_2_4() -> None:
    """Triton 3.6's interpreter turns its scalars (shape-(1,) arrays) into ints with int(array), which
    numpy >= 2.4 refuses; index them the way numpy still allows."""
    try:
        import triton.runtime.interpreter as interp
    except ImportError:
        return
    patch = getattr(interp, "_patch_lang_tensor", None)
    if patch is None:  # another Triton version: nothing to adapt
        return

    def patched(tensor, scope):
        patch(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interp._patch_lang_tensor = patched


_patch_triton_interpreter_for_numpy_2_4()
