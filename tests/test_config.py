"""Config presets against AlphaFold's own ``model_config``, YAML merging and error reporting."""

import subprocess
import sys

import pytest
from alphafold.model import config as af_config

from fastfold.config import ConfigError, dump_yaml, load_experiment, model_config, preset_names

# Where our presets differ from alphafold-colabfold 2.3.11's model_config, on purpose.
DELIBERATE_DIFFERENCES = {
    # ColabFold's fork runs in bfloat16 by default; DeepMind's monomer models run in float32.
    "model.global_config.bfloat16": (False, True),
    # ColabFold fuses the left/right triangle projections; DeepMind's published monomer
    # parameters have them separate (left_projection, right_projection, left_gate, right_gate).
    "model.embeddings_and_evoformer.evoformer.triangle_multiplication_outgoing.fuse_projection_weights":
        (False, True),
    "model.embeddings_and_evoformer.evoformer.triangle_multiplication_incoming.fuse_projection_weights":
        (False, True),
    "model.embeddings_and_evoformer.template.template_pair_stack.triangle_multiplication_outgoing."
    "fuse_projection_weights": (False, True),
    "model.embeddings_and_evoformer.template.template_pair_stack.triangle_multiplication_incoming."
    "fuse_projection_weights": (False, True),
}
# Keys only ColabFold's fork has (its early stopping, ranking and multi-chain relpos); DeepMind's
# v2.3.2 monomer config has none of them.
COLABFOLD_ONLY_KEYS = {"model.rank_by", "model.stop_at_score", "model.recycle_early_stop_tolerance",
                       "data.eval.feat.asym_id"}
# Keys only FastFold has: the kernel switch (auto / triton / torch), which AlphaFold has no use for.
FASTFOLD_ONLY_KEYS = {"model.global_config.kernel"}


def _flatten(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


MONOMER_PRESETS = [f"model_{i}{suffix}" for i in range(1, 6) for suffix in ("", "_ptm")]


def test_preset_names_are_the_monomer_models():
    assert preset_names() == sorted(MONOMER_PRESETS)


@pytest.mark.parametrize("name", MONOMER_PRESETS)
def test_preset_equals_alphafold_model_config(name):
    ours = _flatten(model_config(name).to_dict())
    reference = _flatten(af_config.model_config(name).to_dict())
    assert set(reference) - set(ours) == COLABFOLD_ONLY_KEYS
    assert set(ours) - set(reference) == FASTFOLD_ONLY_KEYS
    for key, value in ours.items():
        if key in FASTFOLD_ONLY_KEYS:
            continue
        if key in DELIBERATE_DIFFERENCES:
            assert (value, reference[key]) == DELIBERATE_DIFFERENCES[key], key
        else:
            assert value == reference[key], key
            assert type(value) is type(reference[key]), key


def test_ptm_adds_only_the_aligned_error_head():
    plain = _flatten(model_config("model_3").to_dict())
    ptm = _flatten(model_config("model_3_ptm").to_dict())
    changed = {key for key in plain if plain[key] != ptm[key]}
    assert changed == {"model.heads.predicted_aligned_error.weight"}
    assert ptm["model.heads.predicted_aligned_error.weight"] == 0.1


def test_yaml_and_overrides_merge_onto_the_preset(tmp_path):
    path = tmp_path / "experiment.yaml"
    path.write_text("preset: model_3\nmodel:\n  embeddings_and_evoformer:\n    evoformer_num_block: 2\n"
                    "  heads:\n    distogram:\n      weight: 1\n")
    config = load_experiment(path, ["model.embeddings_and_evoformer.evoformer_num_block=3",
                                    "model.global_config.use_remat=true"])
    assert config.model.embeddings_and_evoformer.evoformer_num_block == 3  # the command line wins
    assert config.model.global_config.use_remat is True
    assert config.model.heads.distogram.weight == 1.0
    assert isinstance(config.model.heads.distogram.weight, float)  # int promoted to the key's float
    assert config.data.common.max_extra_msa == 5120  # model_3's own change survives
    assert not config.model.embeddings_and_evoformer.template.enabled


def test_dumped_yaml_loads_back_equal(tmp_path):
    config = load_experiment(None, ["model.num_recycle=1"], preset="model_2_ptm")
    path = tmp_path / "dump.yaml"
    path.write_text("preset: model_2_ptm\n" + dump_yaml(config))
    assert load_experiment(path).to_dict() == config.to_dict()


@pytest.mark.parametrize("text, message", [
    ("model:\n  evoformer_num_blocks: 2\n", "unknown key 'model.evoformer_num_blocks'"),
    ("model:\n  num_recycle: three\n", "key 'model.num_recycle' expects int, got str"),
    ("model:\n  global_config:\n    use_remat: 1\n",
     "key 'model.global_config.use_remat' expects bool, got int"),
    ("model:\n  heads: 3\n", "key 'model.heads' is a section"),
    ("model: [1, 2\n", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping"),
    ("preset: model_9\n", "unknown preset 'model_9'"),
])
def test_bad_yaml_names_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_experiment(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_bad_override_names_the_key():
    with pytest.raises(ConfigError, match="command line: key 'model.num_recycle' expects int, got float"):
        load_experiment(None, ["model.num_recycle=1.5"])
    with pytest.raises(ConfigError, match="not of the form dotted.key=value"):
        load_experiment(None, ["model.num_recycle"])


def test_config_is_locked_against_new_keys():
    config = model_config("model_1")
    with pytest.raises(AttributeError):
        config.model.new_key = 1


def test_command_line_user_error_exits_without_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  num_recycl: 1\n")
    result = subprocess.run([sys.executable, "-m", "fastfold.config", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{path}: unknown key 'model.num_recycl'" in result.stderr


def test_command_line_prints_the_merged_config(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fastfold.config", "configs/demo.yaml",
                             "model.embeddings_and_evoformer.evoformer_num_block=5"],
                            capture_output=True, text=True, check=True)
    assert "evoformer_num_block: 5" in result.stdout
