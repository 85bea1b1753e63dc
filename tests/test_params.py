"""Parameter files in DeepMind's layout: round trip, and a clear error for every kind of wrong file.

Every error must be a ParameterFileError naming the file and the first offending key, and must leave
the model's parameters as they were.
"""

import numpy as np
import pytest
import torch
from alphafold_reference import random_parameters, save_npz
from model_inputs import flat_parameters, nested_parameters

from fastfold.config import model_config
from fastfold.model.alphafold import PARAMETER_PREFIX, AlphaFold
from fastfold.model.params import ParameterFileError, haiku_params, write_npz

PAE_BIAS = f"{PARAMETER_PREFIX}/predicted_aligned_error_head/logits//bias"


def small_model(name: str) -> AlphaFold:
    config = model_config(name).model
    config.embeddings_and_evoformer.evoformer_num_block = 1
    config.embeddings_and_evoformer.extra_msa_stack_num_block = 1
    config.embeddings_and_evoformer.template.template_pair_stack.num_block = 1
    return AlphaFold(config)


def random_flat(model: AlphaFold, seed: int) -> dict:
    """The model's parameter file contents with random non-zero values."""
    ours = nested_parameters(haiku_params(model.alphafold_iteration, PARAMETER_PREFIX))
    return flat_parameters(random_parameters(ours, seed=seed))


@pytest.fixture(scope="module")
def ptm_model():
    return small_model("model_1_ptm")


@pytest.fixture(scope="module")
def plain_model():
    return small_model("model_1")


def state(model: AlphaFold) -> dict:
    return {name: value.clone() for name, value in model.state_dict().items()}


def assert_rejected(model: AlphaFold, path, first_key: str):
    """Loading ``path`` raises a ParameterFileError naming the file and ``first_key``; nothing changes."""
    before = state(model)
    with pytest.raises(ParameterFileError) as error:
        model.load_parameters(path)
    assert str(path) in str(error.value)
    assert repr(first_key) in str(error.value)
    after = state(model)
    assert all(torch.equal(before[name], after[name]) for name in before)
    return str(error.value)


def test_save_load_round_trip_is_bit_exact(ptm_model, plain_model, tmp_path):
    flat = random_flat(ptm_model, seed=1)
    write_npz(tmp_path / "random.npz", flat)
    ptm_model.load_parameters(tmp_path / "random.npz")
    ptm_model.save_parameters(tmp_path / "saved.npz")
    reloaded = small_model("model_1_ptm")
    reloaded.load_parameters(tmp_path / "saved.npz")
    with np.load(tmp_path / "saved.npz") as saved:
        assert sorted(saved.files) == sorted(flat)
        assert all(saved[key].dtype == np.float32 and np.array_equal(saved[key], flat[key]) for key in flat)
    reloaded_state = reloaded.state_dict()
    for name, value in ptm_model.state_dict().items():
        assert torch.equal(value, reloaded_state[name]), name
    assert len(list(tmp_path.iterdir())) == 2  # no temporary file left behind


def test_file_written_by_haiku_side_loads(plain_model, tmp_path):
    """``save_npz`` writes haiku's nested params as DeepMind publishes them (``{module}//{name}``)."""
    flat = random_flat(plain_model, seed=2)
    save_npz(nested_parameters(flat), tmp_path / "params_model_1.npz")
    plain_model.load_parameters(tmp_path / "params_model_1.npz")
    stacked = plain_model.alphafold_iteration.evoformer.evoformer_stack.evoformer_iteration[0]
    key = f"{PARAMETER_PREFIX}/evoformer/evoformer_iteration/msa_transition/transition1//weights"
    assert np.array_equal(stacked.msa_transition.transition1.weights.detach().numpy(), flat[key][0])
    key = f"{PARAMETER_PREFIX}/evoformer/preprocess_1d//weights"
    preprocess_1d = plain_model.alphafold_iteration.evoformer.input_embedder.preprocess_1d
    assert np.array_equal(preprocess_1d.weights.detach().numpy(), flat[key])


def test_ptm_file_into_model_without_pae_head(ptm_model, plain_model, tmp_path):
    path = tmp_path / "params_model_1_ptm.npz"
    write_npz(path, random_flat(ptm_model, seed=3))
    message = assert_rejected(plain_model, path, PAE_BIAS)
    assert "_ptm" in message


def test_plain_file_into_ptm_model(ptm_model, plain_model, tmp_path):
    path = tmp_path / "params_model_1.npz"
    write_npz(path, random_flat(plain_model, seed=4))
    assert_rejected(ptm_model, path, PAE_BIAS)


def test_extra_key(plain_model, tmp_path):
    flat = random_flat(plain_model, seed=5)
    extra = f"{PARAMETER_PREFIX}/evoformer/unexpected_layer//weights"
    write_npz(tmp_path / "extra.npz", {**flat, extra: np.ones((3, 4), np.float32)})
    assert_rejected(plain_model, tmp_path / "extra.npz", extra)


def test_missing_key(plain_model, tmp_path):
    flat = random_flat(plain_model, seed=6)
    missing = f"{PARAMETER_PREFIX}/evoformer/preprocess_msa//bias"
    del flat[missing]
    write_npz(tmp_path / "missing.npz", flat)
    assert_rejected(plain_model, tmp_path / "missing.npz", missing)


def test_wrong_shape(plain_model, tmp_path):
    flat = random_flat(plain_model, seed=7)
    key = f"{PARAMETER_PREFIX}/evoformer/left_single//weights"
    flat[key] = flat[key].T.copy()
    write_npz(tmp_path / "shape.npz", flat)
    message = assert_rejected(plain_model, tmp_path / "shape.npz", key)
    assert "(128, 22)" in message and "(22, 128)" in message


def test_truncated_file(plain_model, tmp_path):
    path = tmp_path / "truncated.npz"
    write_npz(path, random_flat(plain_model, seed=8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    before = state(plain_model)
    with pytest.raises(ParameterFileError, match=str(path)):
        plain_model.load_parameters(path)
    assert all(torch.equal(value, plain_model.state_dict()[name]) for name, value in before.items())


def test_missing_file(plain_model, tmp_path):
    with pytest.raises(ParameterFileError, match="not found"):
        plain_model.load_parameters(tmp_path / "params_model_9.npz")


def test_multimer_layout(plain_model, tmp_path):
    """A multimer file: relative positions under ``~_relative_encoding``, no ``pair_activiations``."""
    flat = random_flat(plain_model, seed=9)
    evoformer = f"{PARAMETER_PREFIX}/evoformer"
    for name in ("weights", "bias"):
        value = flat.pop(f"{evoformer}/pair_activiations//{name}")
        flat[f"{evoformer}/~_relative_encoding/position_activations//{name}"] = value
    write_npz(tmp_path / "params_model_1_multimer_v3.npz", flat)
    message = assert_rejected(plain_model, tmp_path / "params_model_1_multimer_v3.npz",
                              f"{evoformer}/pair_activiations//bias")
    assert "multimer" in message and "2 parameters this model does not use" in message
