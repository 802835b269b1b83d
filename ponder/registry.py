"""Name -> object registries (standard library only), shared by every folder that picks things by name.

Advantages, KL estimators and loss aggregations (`algos`), rewards and answer checkers (`rewards`) and tasks
(`data`) each own one `Registry`, filled with `@REGISTRY.register("name")`; code looks entries up by the name
a config carries, so it never branches on `loss_type`. A lookup of an unknown name raises a `ValueError`
that lists the allowed names and the closest match, which is what a user with a typo in a recipe needs.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


class Registry(dict):
    """A `dict[str, Callable]` with a registering decorator and a helpful error for unknown names.

    `kind` is a human label used in error messages, e.g. "advantage estimator".
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator: store the function under `name`; registering a name twice is an error."""

        def deco(fn: F) -> F:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self[name] = fn
            return fn

        return deco

    def __missing__(self, name: str):
        raise ValueError(unknown_name_message(self.kind, name, list(self)))

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={sorted(self)})"


def unknown_name_message(kind: str, name: str, allowed: list[str]) -> str:
    """The error text for an unknown `name`: the allowed names and, if any is close, a suggestion."""
    msg = f"unknown {kind} {name!r}; allowed: {', '.join(sorted(allowed))}"
    close = difflib.get_close_matches(str(name), allowed, n=1)
    if close:
        msg += f" (did you mean {close[0]!r}?)"
    return msg


def get(registry: Registry, name: str) -> Callable:
    """Return `registry[name]`, raising `ValueError` that names the allowed entries if `name` is unknown."""
    return registry[name]
