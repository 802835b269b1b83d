"""Data-parallel GRPO across two CPU processes (gloo over loopback): gradients are summed, so every rank
ends with identical weights; only rank 0 writes the run directory."""

import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ponder.config import load_config
from ponder.stages.grpo import GRPOTrainer
from ponder.train.metrics import read_jsonl

SMOKE = Path(__file__).parent.parent / "recipes" / "smoke.toml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, run_dir: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        cfg = load_config(SMOKE, [f"--run.dir={run_dir}", "--grpo.steps=2", "--run.save_every=2"])
        trainer = GRPOTrainer(cfg, Path(run_dir))
        trainer.train()
        flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
        torch.save({"params": flat, "items": trainer.data_position}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_stay_in_sync_and_rank0_writes(tmp_path):
    run_dir = tmp_path / "run"
    mp.spawn(_worker, args=(2, _free_port(), str(run_dir), str(tmp_path)), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    torch.testing.assert_close(a["params"], b["params"], rtol=0, atol=0)
    assert a["items"] == b["items"] == 4  # 4 prompts per step in all, 2 per rank, 2 steps
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]  # written once, by rank 0
    assert (run_dir / "checkpoints" / "step-2").exists()
