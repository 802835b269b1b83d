"""Config: TOML recipes, overrides, and validation errors that name the key, value and allowed values."""

import re
from pathlib import Path

import pytest

from ponder.config import Config, ConfigError, dump_toml, load_config, parse_overrides

# GRPO recipes; pipeline recipes (a [pipeline] table) are validated by tests/test_pipeline.py
RECIPES = sorted(
    p for p in (Path(__file__).parent.parent / "recipes").glob("*.toml") if "[pipeline]" not in p.read_text()
)


def test_defaults_and_overrides_on_cpu():
    cfg = load_config(
        None, ["--grpo.steps=7", "--optim.lr=3e-5", "--task.args.digits=1", "--run.progress=false"]
    )
    assert cfg.grpo.steps == 7 and cfg.optim.lr == 3e-5 and cfg.task.args == {"digits": 1}
    assert cfg.run.progress is False


def test_override_changes_one_weight_and_keeps_the_others_on_cpu():
    cfg = load_config(None, ["--reward.weights.tags=0.1"])
    assert cfg.reward.weights == {**Config().reward.weights, "tags": 0.1}


def test_recipe_table_replaces_default_weights(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[reward]\nweights = { accuracy = 2.0 }\n[grpo]\nsteps = 3\n")
    cfg = load_config(recipe)
    assert cfg.reward.weights == {"accuracy": 2.0} and cfg.grpo.steps == 3


def test_unknown_key_suggests_closest_on_cpu():
    with pytest.raises(ConfigError, match=r"unknown key 'grpo.stpes'.*did you mean 'steps'"):
        load_config(None, ["--grpo.stpes=3"])
    with pytest.raises(ConfigError, match=r"unknown key 'optimm'.*did you mean 'optim'"):
        load_config(None, ["--optimm.lr=1"])


def test_bad_choice_names_key_value_and_allowed_on_cpu():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["--grpo.loss=ppo"])
    msg = str(err.value)
    assert "grpo.loss" in msg and "'ppo'" in msg and "'dapo'" in msg and "'dr_grpo'" in msg


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("--grpo.steps=abc", "grpo.steps = 'abc'"),
        ("--grpo.group_size=1", "grpo.group_size = 1"),
        ("--sampling.top_p=1.5", "sampling.top_p = 1.5"),
        ("--optim.lr=-1", "optim.lr = -1"),
        ("--run.progress=maybe", "run.progress = 'maybe'"),
        ("--prompt.instruction=hello", "must contain '{question}'"),
        ("--sampling.stop=[1]", "sampling.stop[0] = 1"),
        ("--sampling.stop=x", "sampling.stop = 'x'"),
        ("--sampling.min_new_tokens=999", "sampling.min_new_tokens = 999"),
        ("--rollout.num_blocks=-1", "rollout.num_blocks = -1"),
        ("--rollout.max_prefill_tokens=0", "rollout.max_prefill_tokens = 0"),
        ("--rollout.attention=flash", "rollout.attention = 'flash'"),
        ("--rollout.gpu_memory_utilization=1.5", "rollout.gpu_memory_utilization = 1.5"),
        ("--rollout.decode_splits=3", "rollout.decode_splits = 3: must be a power of two"),
        ("--rollout.decode_splits=0", "rollout.decode_splits = 0"),
        ("--rollout.decode_steps=0", "rollout.decode_steps = 0"),
        ("--rollout.graph_sampling=false", "rollout.decode_steps = 8 needs rollout.graph_sampling"),
    ],
)
def test_bad_values_on_cpu(override, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config(None, [override])


def test_default_rollout_backend_is_the_engine_on_cpu():
    assert Config().rollout.backend == "ponder"
    assert load_config(None, ["--rollout.backend=vllm"]).rollout.backend == "vllm"
    with pytest.raises(ConfigError) as err:
        load_config(None, ["--rollout.backend=sglang"])
    msg = str(err.value)
    assert "rollout.backend" in msg and "'sglang'" in msg
    assert all(f"'{b}'" in msg for b in ("hf", "ponder", "vllm"))


def test_kv_blocks_hold_the_batch_unless_set_on_cpu():
    auto = load_config(None, ["--rollout.max_batch=8", "--rollout.block_size=16"]).rollout
    assert auto.num_blocks == 0
    assert auto.kv_blocks(sequences=32, tokens_per_sequence=100) == 8 * 7  # max_batch x ceil(100 / 16)
    assert auto.kv_blocks(sequences=3, tokens_per_sequence=96) == 3 * 6  # fewer sequences than max_batch
    fixed = load_config(None, ["--rollout.num_blocks=40"]).rollout
    assert fixed.kv_blocks(sequences=32, tokens_per_sequence=100) == 40


def test_stop_strings_parse_on_cpu():
    cfg = load_config(None, ['--sampling.stop=["</answer>", "\\n\\n"]', "--sampling.min_new_tokens=2"])
    assert cfg.sampling.stop == ["</answer>", "\n\n"] and cfg.sampling.min_new_tokens == 2


def test_malformed_override_on_cpu():
    with pytest.raises(ConfigError, match="--section.key=value"):
        parse_overrides(["grpo.steps=3"])


def test_toml_syntax_error_names_file_and_line(tmp_path):
    recipe = tmp_path / "broken.toml"
    recipe.write_text("[grpo]\nsteps = = 3\n")
    with pytest.raises(ConfigError, match=r"broken.toml.*line 2"):
        load_config(recipe)


def test_dump_round_trips(tmp_path):
    cfg = load_config(None, ["--task.args.digits=3", '--prompt.system=a "quoted"\nline', "--grpo.beta=0.04"])
    path = tmp_path / "config.toml"
    path.write_text(dump_toml(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipes_validate(recipe):
    load_config(recipe)
