"""The whole monomer model with recycling against AlphaFold's JAX model, on random non-zero parameters.

Small DeepMind-settings config (model_1_ptm: templates with torsion-angle rows, pTM head): 2 Evoformer
blocks, 1 extra-MSA block, 1 template, 30 residues with an unknown one, 1 recycle. The JAX fork drives
recycling from outside: its ``AlphaFold`` is called once per iteration on that iteration's feature
slice, with the previous call's ``prev``. Our model runs both iterations in one call on features with
the leading recycle dimension.

The parameters are AlphaFold's tree (checked against haiku's own, shape by shape), randomised by
``random_parameters`` and written by the JAX side's ``save_npz``; our model reads that file.
"""

import haiku as hk
import jax
import numpy as np
import pytest
import torch
from alphafold.model import modules as af_modules
from alphafold_reference import deepmind_monomer_config, random_features, random_parameters, save_npz
from test_embedders_heads import with_defined_first_pre_omega

from fastfold.model import heads
from fastfold.model.alphafold import PARAMETER_PREFIX, AlphaFold
from fastfold.model.params import haiku_params

NUM_RES, NUM_MSA, NUM_EXTRA, NUM_TEMPL, NUM_ITERATIONS = 30, 6, 9, 1, 2
# Recycle-dependent features: DeepMind resamples the MSA for every iteration.
MSA_FEATURES = ("msa_feat", "msa_mask", "bert_mask", "true_msa", "extra_msa", "extra_msa_mask",
                "extra_has_deletion", "extra_deletion_value")
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def small_config():
    cfg = deepmind_monomer_config("model_1_ptm")
    model_config = cfg.model
    model_config.embeddings_and_evoformer.evoformer_num_block = 2
    model_config.embeddings_and_evoformer.extra_msa_stack_num_block = 1
    model_config.num_recycle = NUM_ITERATIONS - 1
    return model_config


def recycled_features() -> dict:
    """Features with a leading recycle dimension; the MSA features differ between iterations."""
    slices = [with_defined_first_pre_omega(random_features(NUM_RES, NUM_MSA, NUM_EXTRA, NUM_TEMPL, seed=21))]
    resampled = random_features(NUM_RES, NUM_MSA, NUM_EXTRA, NUM_TEMPL, seed=22)
    slices.append({**slices[0], **{key: resampled[key] for key in MSA_FEATURES}})
    return {key: np.stack([s[key] for s in slices]) for key in slices[0]}


def nested(flat: dict) -> dict:
    tree = {}
    for key, value in flat.items():
        module, name = key.split("//")
        tree.setdefault(module, {})[name] = value
    return tree


def run_alphafold_jax(model_config, params, features) -> dict:
    """The fork's AlphaFold, once per iteration, each call on its feature slice with the last ``prev``."""
    def forward(batch):
        return af_modules.AlphaFold(model_config)(batch, is_training=False, return_representations=True)

    transformed = hk.transform(forward)
    evoformer_config = model_config.embeddings_and_evoformer
    prev = {"prev_pos": np.zeros((NUM_RES, 37, 3), np.float32),
            "prev_msa_first_row": np.zeros((NUM_RES, evoformer_config.msa_channel), np.float32),
            "prev_pair": np.zeros((NUM_RES, NUM_RES, evoformer_config.pair_channel), np.float32)}
    first_slice = {key: value[:1] for key, value in features.items()}
    expected_shapes = jax.eval_shape(transformed.init, jax.random.PRNGKey(0), {**first_slice, "prev": prev})
    assert jax.tree_util.tree_map(lambda x: x.shape, expected_shapes) == jax.tree_util.tree_map(
        np.shape, params), "our parameter tree differs from haiku's"

    apply = None
    for iteration in range(NUM_ITERATIONS):
        inputs = (params, jax.random.PRNGKey(iteration),
                  {**{key: value[iteration:iteration + 1] for key, value in features.items()}, "prev": prev})
        if apply is None:  # compile time dominates at this size: compile with few optimisations
            apply = jax.jit(transformed.apply).lower(*inputs).compile(FAST_COMPILE)
        outputs = apply(*inputs)
        prev = outputs["prev"]
    return jax.tree_util.tree_map(np.asarray, outputs)


@pytest.fixture(scope="module")
def both_models(tmp_path_factory):
    model_config = small_config()
    torch.manual_seed(0)
    model = AlphaFold(model_config)
    params = random_parameters(nested(haiku_params(model.alphafold_iteration, PARAMETER_PREFIX)), seed=23)
    # Smaller backbone updates keep the random structure protein-sized (CA-CA distances 1-35 A rather
    # than 300 A), so that the recycled distogram spreads over its bins and 1e-3 A is a float32 test.
    affine_update = params[f"{PARAMETER_PREFIX}/structure_module/fold_iteration/affine_update"]
    for name in affine_update:
        affine_update[name] = affine_update[name] * np.float32(0.1)
    path = tmp_path_factory.mktemp("params") / "params_model_1_ptm.npz"
    save_npz(params, path)
    model.load_parameters(path)
    model.eval()

    features = recycled_features()
    expected = run_alphafold_jax(model_config, params, features)
    with torch.no_grad():
        actual = model({key: torch.from_numpy(value) for key, value in features.items()},
                       return_representations=True)
    return actual, expected


def max_error(actual, expected) -> float:
    return float(np.abs(actual.detach().numpy() - np.asarray(expected)).max())


def test_structure_and_confidence(both_models):
    actual, expected = both_models
    positions = expected["structure_module"]["final_atom_positions"]
    assert 10.0 < np.abs(positions).max() < 100.0
    assert max_error(actual["structure_module"]["final_atom_positions"], positions) <= 1e-3  # Angstrom
    assert max_error(actual["plddt"], expected["plddt"]) <= 1e-3
    assert max_error(actual["pae"], expected["predicted_aligned_error"]) <= 1e-3
    # pTM of random parameters is small (about 3e-3): also check it relative to its size.
    assert max_error(actual["ptm"], expected["ptm"]) <= min(1e-3, 1e-4 * float(expected["ptm"]))
    assert max_error(actual["max_predicted_aligned_error"], expected["max_predicted_aligned_error"]) == 0.0


@pytest.mark.parametrize("path", [("representations", "single"), ("representations", "pair"),
                                  ("representations", "msa"), ("representations", "msa_first_row"),
                                  ("representations", "structure_module"), ("distogram", "logits"),
                                  ("masked_msa", "logits"), ("experimentally_resolved", "logits"),
                                  ("predicted_lddt", "logits")])
def test_representations_and_logits(both_models, path):
    """Every representation and head output of the last iteration: max abs error <= 1e-4 x max abs."""
    actual, expected = both_models
    for key in path:
        actual, expected = actual[key], expected[key]
    scale = np.abs(expected).max()
    assert scale > 0 and max_error(actual, expected) <= 1e-4 * scale


def test_gradient_flows_through_the_last_iteration_only():
    """Recycled inputs are detached: the gradient equals that of one iteration fed the previous outputs."""
    config = small_config()
    config.embeddings_and_evoformer.evoformer_num_block = 1
    config.heads.structure_module.num_layer = 2
    torch.manual_seed(1)
    model = AlphaFold(config).eval()  # no dropout
    features = {key: torch.from_numpy(value) for key, value in recycled_features().items()}
    model.zero_grad()
    model(features)["plddt"].sum().backward()
    gradients = {name: param.grad.clone() for name, param in model.named_parameters()
                 if param.grad is not None}

    iteration = model.alphafold_iteration
    evoformer_config = config.embeddings_and_evoformer
    zeros = {"prev_pos": torch.zeros(NUM_RES, 37, 3),
             "prev_msa_first_row": torch.zeros(NUM_RES, evoformer_config.msa_channel),
             "prev_pair": torch.zeros(NUM_RES, NUM_RES, evoformer_config.pair_channel)}
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
    features = {key: torch.from_numpy(value[:1]) for key, value in recycled_features().items()}
    with pytest.raises(ValueError, match="1 recycling slices, 2 iterations"):
        model(features)
