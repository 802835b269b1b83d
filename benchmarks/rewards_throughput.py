"""Reward throughput on this machine: sandboxed HumanEval executions/s and math checks/s.

    python benchmarks/rewards_throughput.py [--humaneval PATH] [--workers 2] [--checks 2000]

Prints one table. HumanEval: every canonical solution run against its tests in the sandbox (bubblewrap when
available), through `run_many` with `--workers` threads. Math: `--checks` simple numeric answers through the
verifier's worker pool (`MathVerifier.score_batch`).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from ponder.rewards.base import Reference
from ponder.rewards.code import code_score
from ponder.rewards.math import MathVerifier
from ponder.rewards.sandbox import Sandbox


def humaneval_rate(path: Path, workers: int) -> tuple[float, int, int]:
    """(executions per second, passed, total) for the canonical solutions."""
    from concurrent.futures import ThreadPoolExecutor

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    jobs = [
        (
            f"<answer>\n```python\n{r['prompt']}{r['canonical_solution']}\n```\n</answer>",
            Reference(
                "",
                checker="exact",
                meta={"prompt": r["prompt"], "test": r["test"], "entry_point": r["entry_point"]},
            ),
        )
        for r in rows
    ]
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        scores = list(pool.map(lambda job: code_score(job[0], job[1], partial=False), jobs))
    elapsed = time.perf_counter() - start
    return len(jobs) / elapsed, sum(s == 1.0 for s in scores), len(jobs)


def math_rate(n: int, workers: int) -> tuple[float, float]:
    """(checks per second, share scored correct) on simple numeric answers, half of them right."""
    rng = random.Random(0)
    golds = [str(rng.randint(1, 10_000)) for _ in range(n)]
    answers = [f"<think>t</think><answer>{g if i % 2 else int(g) + 1}</answer>" for i, g in enumerate(golds)]
    verifier = MathVerifier(workers=workers, timeout=5.0)
    try:
        verifier.score_batch(answers[:8], golds[:8])  # warm-up
        start = time.perf_counter()
        scores = verifier.score_batch(answers, golds)
        elapsed = time.perf_counter() - start
    finally:
        verifier.close()
    return n / elapsed, sum(scores) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--humaneval", default=str(Path(__file__).resolve().parents[2] / "shared/data/humaneval.jsonl")
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--checks", type=int, default=2000)
    args = parser.parse_args()
    print(f"sandbox backend: {Sandbox().backend}")
    he_rate, passed, total = humaneval_rate(Path(args.humaneval), args.workers)
    m_rate, right = math_rate(args.checks, args.workers)
    print(f"{'what':40s} {'rate':>10s}")
    print(f"{'HumanEval sandboxed executions/s':40s} {he_rate:10.1f}   ({passed}/{total} canonical pass)")
    print(f"{'math checks/s (simple numbers)':40s} {m_rate:10.1f}   ({right:.0%} scored right, 50% expected)")


if __name__ == "__main__":
    main()
