"""Code rewards: run the completion's program against the reference's tests in the sandbox.

Two kinds of tests, picked by what `Reference.meta` holds:
- HumanEval style, `meta={"prompt", "test", "entry_point"}`: program = prompt + completion (a body that
  continues the prompt, or a whole `def entry_point`) + test + `check(entry_point)`. Each top-level statement
  of `check` that contains an `assert` is one case, so partial credit exists.
- stdin/stdout, `meta={"cases": [{"input": ..., "output": ...}, ...]}`: one sandboxed run per case; the
  output must match all lines (trailing whitespace ignored) and the program must exit 0.

"code_pass" scores 1.0 only when every case passes; "code_partial" scores the fraction passed.

Reward hacks this closes (each has a test): exiting before the tests run (`sys.exit(0)`, `os._exit`) --
the harness writes a random nonce and the per-case results on fd 1 *after* `check` returns, the parent
requires it; results whose `__eq__` lies -- the candidate is wrapped so that any return value that is not
made only of exact builtin types (int, str, list, ... not subclasses) raises; patched builtins (`abs`,
`len`, `isinstance`, ...) -- restored from a snapshot before `check` runs; printing only part of a stdio
answer -- whole-output comparison.
What it does NOT catch: a program that reads the nonce from its own stdin or digs the harness out of
memory, patches stdlib modules the tests use (e.g. `math.isclose`), or starts a thread that races `check`.
These take deliberate work; the sandbox still bounds the damage to a wrong score.
"""

from __future__ import annotations

import ast
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from ponder.rewards.base import Reference, register_reward
from ponder.rewards.extract import answer_block
from ponder.rewards.sandbox import Limits, run_many, run_sandboxed

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)

# Runs before the completion: keeps the originals the harness needs, out of the program's reach by name.
_PRELUDE = """\
import builtins as _ponder_builtins, os as _ponder_os, sys as _ponder_sys
_ponder_saved = (dict(_ponder_builtins.__dict__), _ponder_os.write, _ponder_os.read, type, len, id)
_ponder_results = []
"""

# Runs after the completion and the test code.
_EPILOGUE = """\
def _ponder_run(entry):
    builtins_dict, write, read, type_, len_, id_ = _ponder_saved
    _ponder_builtins.__dict__.clear()
    _ponder_builtins.__dict__.update(builtins_dict)
    _ponder_sys.settrace(None)
    _ponder_sys.setprofile(None)
    plain = (bool, int, float, complex, str, bytes, type(None), list, tuple, dict, set, frozenset)

    def check_plain(value, depth=0):
        if type_(value) not in plain or depth > 50:
            raise TypeError("candidate returned a non-builtin value: " + type_(value).__name__)
        if type_(value) is dict:
            for k, v in value.items():
                check_plain(k, depth + 1)
                check_plain(v, depth + 1)
        elif type_(value) in (list, tuple, set, frozenset):
            for item in value:
                check_plain(item, depth + 1)

    def guarded(*args, **kwargs):
        out = entry(*args, **kwargs)
        check_plain(out)
        return out

    check(guarded)
    nonce = read(0, 64).decode().strip()
    flags = "".join("1" if ok else "0" for ok in _ponder_results)
    write(1, ("\\n" + nonce + " " + flags + "\\n").encode())


_ponder_run({entry_point})
"""


def extract_program(completion: str) -> str | None:
    """The program in a completion: the `<answer>` block (its fenced code if fenced), else the last
    ```python fenced block; None when there is neither."""
    block = answer_block(completion)
    if block is not None:
        fenced = _FENCE.findall(block)
        return fenced[-1] if fenced else block
    fenced = _FENCE.findall(completion)
    return fenced[-1] if fenced else None


def split_check_cases(test: str) -> tuple[str, int]:
    """Rewrite `check` so each top-level statement holding an `assert` records pass/fail; (source, n)."""
    tree = ast.parse(test)
    n = 0
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            n = sum(_has_assert(stmt) for stmt in node.body)
            node.body = [_record(stmt) if _has_assert(stmt) else stmt for stmt in node.body]
    return ast.unparse(ast.fix_missing_locations(tree)), n


def _has_assert(stmt: ast.stmt) -> bool:
    return any(isinstance(node, ast.Assert) for node in ast.walk(stmt))


def _record(stmt: ast.stmt) -> ast.stmt:
    """try: <stmt>; results.append(True) except Exception: results.append(False)."""
    source = "try:\n    pass\n    _ponder_results.append(True)\n"
    source += "except Exception:\n    _ponder_results.append(False)"
    wrapper = ast.parse(source).body[0]
    wrapper.body[0] = stmt
    return wrapper


def humaneval_program(program: str, meta: Mapping[str, Any]) -> tuple[str, int]:
    """The full harness source for a HumanEval-style item, and its number of cases.

    The harness's names get a random tag per run, so a program cannot rebind them by name (e.g. replace
    the results list with one that records every failure as a pass).
    """
    entry = meta["entry_point"]
    if not entry.isidentifier():
        raise ValueError(f"entry_point {entry!r} is not an identifier")
    test, n = split_check_cases(meta["test"])
    tag = f"_p{secrets.token_hex(8)}_"
    # A whole `def entry(...)` goes after the prompt (which keeps its imports and helpers, and is valid on
    # its own: the docstring is a body); a bare body continues the prompt's signature, as in HumanEval.
    whole = re.search(rf"^def\s+{entry}\s*\(", program, re.M) is not None
    code = meta.get("prompt", "") + ("\n" if whole else "") + program
    harness_end = "\n\n".join([test, _EPILOGUE.format(entry_point=entry)]).replace("_ponder_", tag)
    return "\n".join([_PRELUDE.replace("_ponder_", tag), code, "", harness_end]), n


def run_humaneval(program: str, meta: Mapping[str, Any], limits: Limits | None = None) -> list[bool]:
    """Per-case results of `program` on a HumanEval-style item; all False unless the harness finished."""
    source, n = humaneval_program(program, meta)
    nonce = secrets.token_hex(16)
    result = run_sandboxed(source, stdin=nonce + "\n", limits=limits)
    match = re.search(rf"^{nonce} ([01]*)$", result.stdout, re.M)
    if not result.ok or match is None or len(match.group(1)) != n:
        return [False] * max(n, 1)
    return [flag == "1" for flag in match.group(1)] or [True]


def outputs_match(actual: str, expected: str) -> bool:
    """Whole-output equality up to trailing whitespace on each line and trailing blank lines."""

    def lines(text: str) -> list[str]:
        return [line.rstrip() for line in text.rstrip().splitlines()]

    return lines(actual) == lines(expected)


def run_stdio(
    program: str, cases: Sequence[Mapping[str, str]], limits: Limits | None = None, workers: int = 2
) -> list[bool]:
    """Per-case results: one sandboxed run per case, exit 0 and matching stdout required."""
    results = run_many([program] * len(cases), [c["input"] for c in cases], limits=limits, workers=workers)
    return [r.ok and outputs_match(r.stdout, c["output"]) for r, c in zip(results, cases, strict=True)]


def case_results(completion: str, ref: Reference, limits: Limits | None = None) -> list[bool]:
    """Per-case results of a completion against the reference's tests (HumanEval or stdio meta)."""
    meta = ref.meta
    if "cases" not in meta and "test" not in meta:
        raise ValueError("code rewards need meta['test'] + meta['entry_point'] or meta['cases']")
    program = extract_program(completion)
    if "cases" in meta:
        if program is None:
            return [False] * max(len(meta["cases"]), 1)
        return run_stdio(program, meta["cases"], limits)
    if program is None:
        return [False] * max(split_check_cases(meta["test"])[1], 1)
    return run_humaneval(program, meta, limits)


def code_score(completion: str, ref: Reference, partial: bool, limits: Limits | None = None) -> float:
    """Fraction of cases passed (`partial`) or 1.0 only if all pass; a sandbox failure raises Unscorable."""
    limits = limits or Limits(wall_s=float(ref.meta.get("wall_s", Limits.wall_s)))
    results = case_results(completion, ref, limits)
    if partial:
        return sum(results) / len(results) if results else 0.0
    return float(bool(results) and all(results))


@register_reward("code_pass")
def code_pass(completion: str, ref: Reference) -> float:
    """1.0 when the program passes every test case, else 0.0."""
    return code_score(completion, ref, partial=False)


@register_reward("code_partial")
def code_partial(completion: str, ref: Reference) -> float:
    """Fraction of test cases the program passes."""
    return code_score(completion, ref, partial=True)
