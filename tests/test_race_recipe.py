"""recipes/addition_race.toml, the ponder arm of the TRL learning race (benchmarks/trl_vs_ponder.py): it
validates, holds the setup both arms share (../shared/GPU.md, "Peer learning baseline"), and accepts the
benchmark's CPU smoke flags. No model is loaded."""

from pathlib import Path

from ponder.config import R1_ZERO_SYSTEM, load_config
from ponder.rewards import REWARDS

RECIPE = Path(__file__).parent.parent / "recipes" / "addition_race.toml"


def test_race_recipe_holds_the_shared_setup_on_cpu():
    cfg = load_config(RECIPE)
    assert cfg.model.name == "smollm2-135m"
    assert (cfg.task.name, cfg.task.args) == ("arithmetic", {"digits": 2, "min_digits": 2})
    assert (cfg.prompt.mode, cfg.prompt.system, cfg.prompt.instruction) == (
        "chat",
        R1_ZERO_SYSTEM,
        "{question}",
    )
    assert (cfg.grpo.prompts_per_step, cfg.grpo.group_size, cfg.sampling.max_new_tokens) == (32, 8, 128)
    assert (cfg.optim.lr, cfg.grpo.beta) == (2e-5, 0.0)
    # greedy evaluation on 256 held-out problems, at the training length
    assert (cfg.eval.size, cfg.eval.samples, cfg.eval.temperature, cfg.eval.max_new_tokens) == (
        256,
        1,
        0.0,
        0,
    )
    assert cfg.eval.every > 0 and not cfg.eval.task  # evaluated during training, on the training task


def test_race_recipe_runs_a_step_as_one_batch_on_cpu():
    cfg = load_config(RECIPE)
    per_step = cfg.grpo.prompts_per_step * cfg.grpo.group_size
    assert cfg.rollout.max_batch >= per_step  # all 256 samples decode together
    assert per_step % cfg.grpo.micro_batch_size == 0  # TRL's arm: gradient accumulation = per_step / micro


def test_race_recipe_rewards_are_registered_on_cpu():
    cfg = load_config(RECIPE)
    assert set(cfg.reward.weights) <= set(REWARDS)


def test_race_recipe_takes_the_smoke_flags_on_cpu():
    smoke = [
        "--grpo.steps=2",
        "--grpo.prompts_per_step=2",
        "--grpo.group_size=2",
        "--sampling.max_new_tokens=16",
        "--eval.size=4",
        "--model.device=cpu",
    ]
    cfg = load_config(RECIPE, smoke)
    assert (cfg.grpo.steps, cfg.grpo.group_size, cfg.eval.size, cfg.model.device) == (2, 2, 4, "cpu")
    assert cfg.sampling.max_new_tokens == 16 and cfg.eval.temperature == 0


def test_race_script_imports_and_parses_its_arguments():
    """The script imports ponder's API at module level: a rename there must fail here, not on the GPU."""
    import subprocess
    import sys

    script = RECIPE.parent.parent / "benchmarks" / "trl_vs_ponder.py"
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "--time-budget" in done.stdout
