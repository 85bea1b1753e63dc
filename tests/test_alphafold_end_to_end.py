"""The whole monomer model with recycling against AlphaFold's JAX model, on real features.

Small DeepMind-settings config (model_1_ptm: templates with torsion-angle rows, pTM head): 2 Evoformer
blocks, 1 extra-MSA block, 2 iterations (1 recycle). The features come from real files through our
data pipeline (:func:`model_inputs.real_features`): a 30-residue globin window with an unknown
residue, its MSA of real globins (6 clusters, 16 extra sequences, resampled per iteration), and a
real template (1A8O chain A) beside a padding template, processed in eval mode.

The JAX fork drives recycling from outside (:func:`alphafold_reference.run_alphafold`); our model runs
both iterations in one call on features with the leading recycle dimension. The parameters are
random non-zero values in AlphaFold's tree, written in DeepMind's npz layout and read by our model.
"""

import numpy as np
import pytest
import torch
from alphafold_reference import (
    deepmind_monomer_config,
    final_output_errors,
    max_error,
    relative_output_errors,
    run_alphafold,
    save_npz,
)
from model_inputs import as_torch, random_module_parameters, real_features

from fastfold.config import model_config
from fastfold.model import heads
from fastfold.model.alphafold import PARAMETER_PREFIX, AlphaFold

NUM_ITERATIONS = 2


def small_config():
    """AlphaFold's model_1_ptm model node: 2 Evoformer blocks, 1 extra-MSA block, 1 recycle."""
    config = deepmind_monomer_config("model_1_ptm").model
    config.embeddings_and_evoformer.evoformer_num_block = 2
    config.embeddings_and_evoformer.extra_msa_stack_num_block = 1
    config.num_recycle = NUM_ITERATIONS - 1
    return config


def small_features() -> dict:
    """Real eval features: 30 residues, 8 - 2 = 6 MSA clusters, 16 extra rows, 2 templates, 2 slices."""
    config = model_config("model_1_ptm")
    config.data.eval.max_msa_clusters = 8  # less max_templates: model_1 reserves rows for templates
    config.data.eval.max_templates = 2
    config.data.common.max_extra_msa = 16
    config.data.common.num_recycle = NUM_ITERATIONS - 1
    return real_features(config)


@pytest.fixture(scope="module")
def features() -> dict:
    return small_features()


def test_features_are_real(features):
    """The inputs exercise what the test claims: an unknown residue, a real and a padding template,
    MSA rows with gaps and deletions, and a resampled MSA in the second iteration."""
    assert (features["aatype"] == 20).sum(axis=-1).tolist() == [1, 1]
    np.testing.assert_array_equal(features["template_mask"], [[1, 0], [1, 0]])
    assert features["template_all_atom_masks"][0, 0].sum() > 100
    assert (features["msa_feat"][..., 22] > 0).any() and (features["msa_feat"][..., 23] > 0).any()
    assert not np.array_equal(features["msa_feat"][0], features["msa_feat"][1])


def test_matches_alphafold(features, tmp_path):
    """Issue 4's bounds: atoms within 1e-3 A, pLDDT, PAE and pTM within 1e-3 of AlphaFold's; every
    representation and logit within 1e-4 of its largest value. One test, so that the two models run
    once however pytest-xdist spreads the tests."""
    config = small_config()
    torch.manual_seed(0)
    model = AlphaFold(config)
    params = random_module_parameters(model.alphafold_iteration, PARAMETER_PREFIX, seed=23)
    path = tmp_path / "params_model_1_ptm.npz"
    save_npz(params, path)
    model.load_parameters(path)
    expected = run_alphafold(config, params, features, NUM_ITERATIONS)
    with torch.no_grad():
        actual = model.eval()(as_torch(features), return_representations=True)

    positions = expected["structure_module"]["final_atom_positions"]
    assert 10.0 < np.abs(positions).max() < 100.0
    errors = final_output_errors(actual, expected)
    print("max abs errors:", {key: f"{value:.2e}" for key, value in errors.items()})
    assert errors["final_atom_positions"] <= 1e-3  # Angstrom
    assert errors["plddt"] <= 1e-3 and errors["pae"] <= 1e-3
    # pTM of random parameters is small: also check it relative to its size.
    assert errors["ptm"] <= min(1e-3, 1e-4 * float(expected["ptm"]))
    assert max_error(actual["max_predicted_aligned_error"], expected["max_predicted_aligned_error"]) == 0.0

    relative = relative_output_errors(actual, expected)
    print("max abs errors / max abs:", {key: f"{value:.1e}" for key, value in relative.items()})
    assert max(relative.values()) <= 1e-4, relative


def test_gradient_flows_through_the_last_iteration_only():
    """Recycled inputs are detached: the gradient equals that of one iteration fed the previous outputs."""
    config = small_config()
    config.embeddings_and_evoformer.evoformer_num_block = 1
    config.heads.structure_module.num_layer = 2
    torch.manual_seed(1)
    model = AlphaFold(config).eval()  # no dropout
    features = as_torch(small_features())
    model.zero_grad()
    model(features)["plddt"].sum().backward()
    gradients = {name: param.grad.clone() for name, param in model.named_parameters()
                 if param.grad is not None}

    iteration = model.alphafold_iteration
    num_res = features["aatype"].shape[-1]
    evoformer_config = config.embeddings_and_evoformer
    zeros = {"prev_pos": torch.zeros(num_res, 37, 3),
             "prev_msa_first_row": torch.zeros(num_res, evoformer_config.msa_channel),
             "prev_pair": torch.zeros(num_res, num_res, evoformer_config.pair_channel)}
    with torch.no_grad():
        first = iteration({**{key: value[0] for key, value in features.items()}, **zeros})
    prev = {"prev_pos": first["structure_module"]["final_atom_positions"],
            "prev_msa_first_row": first["representations"]["msa_first_row"],
            "prev_pair": first["representations"]["pair"]}
    model.zero_grad()
    last = iteration({**{key: value[1] for key, value in features.items()}, **prev})
    heads.compute_plddt(last["predicted_lddt"]["logits"]).sum().backward()
    assert gradients.keys() == {name for name, param in model.named_parameters() if param.grad is not None}
    for name, param in model.named_parameters():
        if param.grad is not None:
            torch.testing.assert_close(gradients[name], param.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_recycle_dimension_must_cover_every_iteration():
    model = AlphaFold(small_config())
    features = {key: value[:1] for key, value in as_torch(small_features()).items()}
    with pytest.raises(ValueError, match="1 recycling slices, 2 iterations"):
        model(features)
