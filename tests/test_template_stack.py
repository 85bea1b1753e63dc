"""Template pair embedding against AlphaFold's haiku modules, with the same random parameters.

Template features from ``random_features`` (random residue types, atoms missing at random) on
N_res 13 with a padded last residue; DeepMind's float32 settings; max abs error <= 1e-4 x the
reference's max abs value.
"""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from alphafold.model import modules, prng, quat_affine
from alphafold_reference import (
    assert_close,
    deepmind_monomer_config,
    flat_parameters,
    init_and_randomise,
    random_features,
)

from fastfold.model.params import load_haiku_params
from fastfold.model.template import (
    TEMPLATE_PAIR_FEATURES,
    SingleTemplateEmbedding,
    TemplateEmbedding,
    TemplatePairStack,
    backbone_unit_vectors,
)

NUM_RES, NUM_TEMPLATES, PAIR_DIM = 13, 3, 16
RELATIVE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def config():
    return deepmind_monomer_config("model_1_ptm").model


@pytest.fixture(scope="module")
def inputs():
    features = random_features(NUM_RES, num_msa=2, num_extra_msa=2, num_templates=NUM_TEMPLATES, seed=5)
    batch = {k: v for k, v in features.items() if k.startswith("template_")}
    batch["template_mask"] = np.array([1.0, 0.0, 1.0], np.float32)  # the second template is absent
    seq_mask = np.ones(NUM_RES, np.float32)
    seq_mask[-1] = 0.0
    rng = np.random.default_rng(5)
    return {
        "template_batch": batch,
        "query": rng.standard_normal((NUM_RES, NUM_RES, PAIR_DIM)).astype(np.float32),
        "mask_2d": seq_mask[:, None] * seq_mask[None, :],
        "template_pair": rng.standard_normal((NUM_RES, NUM_RES, 64)).astype(np.float32),
    }



def torch_batch(batch: dict) -> dict:
    return {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()}


def test_backbone_unit_vectors_match_alphafold_frames(inputs):
    positions = inputs["template_batch"]["template_all_atom_positions"][0]  # [N_res, 37, 3]
    rotation, translation = quat_affine.make_transform_from_reference(
        n_xyz=positions[:, 0], ca_xyz=positions[:, 1], c_xyz=positions[:, 2])
    rotation, translation = np.asarray(rotation), np.asarray(translation)
    local = np.einsum("iba,ijb->ija", rotation, translation[None, :, :] - translation[:, None, :])
    expected = local / np.sqrt(1e-6 + (local ** 2).sum(-1, keepdims=True))
    backbone_mask = np.ones(NUM_RES, np.float32)
    backbone_mask[3] = 0.0
    expected *= (backbone_mask[:, None] * backbone_mask[None, :])[..., None]
    ours = backbone_unit_vectors(torch.from_numpy(positions), torch.from_numpy(backbone_mask))
    assert np.abs(ours.numpy() - expected).max() < 1e-5
    assert np.abs(ours.numpy()).max() > 0.9


def template_embedding_fn(template_config, global_config):
    def fn(query, batch, mask_2d):
        with hk.with_rng(jax.random.PRNGKey(0)):
            embedding = modules.TemplateEmbedding(template_config, global_config)
            return embedding(query, batch, mask_2d, is_training=False)
    return fn


@pytest.fixture(scope="module")
def reference_embedding(config, inputs):
    """AlphaFold's TemplateEmbedding (jitted apply) and its random parameters, initialised once (haiku's
    initialisation of the layer stack is the slow part of these tests); the sub-module tests below use
    the matching subtrees of these parameters."""
    fn = template_embedding_fn(config.embeddings_and_evoformer.template, config.global_config)
    return init_and_randomise(fn, inputs["query"], inputs["template_batch"], inputs["mask_2d"], seed=4)


def subtree(params: dict, scope: str, new_scope: str) -> dict:
    """The parameters under haiku scope ``scope``, renamed to sit under ``new_scope``."""
    return {new_scope + module[len(scope):]: names for module, names in params.items()
            if module.startswith(scope + "/") or module == scope}


def jitted_apply(fn):
    transformed = hk.transform(fn)
    return jax.jit(lambda params, *args: transformed.apply(params, None, *args))


def test_template_pair_stack(config, inputs, reference_embedding):
    c, gc = config.embeddings_and_evoformer.template.template_pair_stack, config.global_config
    scope = "template_embedding/single_template_embedding/template_pair_stack"
    params = subtree(reference_embedding[1], scope, "template_pair_stack")

    def fn(pair, mask):
        stack = modules.TemplatePairStack(c, gc)
        return stack(pair, mask, is_training=False, safe_key=prng.SafeKey(jax.random.PRNGKey(0)))

    reference = jitted_apply(fn)(params, inputs["template_pair"], inputs["mask_2d"])
    module = TemplatePairStack(c, gc, 64)
    load_haiku_params(module, flat_parameters(params), "template_pair_stack")
    ours = module.eval()(torch.from_numpy(inputs["template_pair"]), torch.from_numpy(inputs["mask_2d"]))
    assert_close(ours, reference, RELATIVE_TOLERANCE)


@pytest.mark.parametrize("use_template_unit_vector", [False, True])
def test_single_template_embedding(config, inputs, reference_embedding, use_template_unit_vector):
    template_config = config.embeddings_and_evoformer.template.copy_and_resolve_references()
    template_config.use_template_unit_vector = use_template_unit_vector
    gc = config.global_config
    params = subtree(reference_embedding[1], "template_embedding/single_template_embedding",
                     "single_template_embedding")
    single = {k: v[0] for k, v in inputs["template_batch"].items() if k in TEMPLATE_PAIR_FEATURES}

    def fn(query, batch, mask_2d):
        with hk.with_rng(jax.random.PRNGKey(0)):
            embedding = modules.SingleTemplateEmbedding(template_config, gc)
            return embedding(query, batch, mask_2d, is_training=False)

    reference = jitted_apply(fn)(params, inputs["query"], single, inputs["mask_2d"])
    module = SingleTemplateEmbedding(template_config, gc)
    load_haiku_params(module, flat_parameters(params), "single_template_embedding")
    features = [torch.from_numpy(single[name])[None] for name in TEMPLATE_PAIR_FEATURES]
    ours = module.eval()(*features, torch.from_numpy(inputs["mask_2d"]))
    assert_close(ours[0], reference, RELATIVE_TOLERANCE)


def run_template_embedding(config, inputs, reference_embedding, template_mask):
    """(ours, AlphaFold's) template embedding with ``template_mask``."""
    apply, params = reference_embedding
    batch = dict(inputs["template_batch"], template_mask=template_mask)
    module = TemplateEmbedding(config.embeddings_and_evoformer.template, config.global_config, PAIR_DIM)
    load_haiku_params(module, flat_parameters(params), "template_embedding")
    query, mask_2d = torch.from_numpy(inputs["query"]), torch.from_numpy(inputs["mask_2d"])
    ours = module.eval()(query, torch_batch(batch), mask_2d)
    return ours, apply(params, inputs["query"], batch, inputs["mask_2d"])


def test_template_embedding(config, inputs, reference_embedding):
    template_mask = inputs["template_batch"]["template_mask"]
    ours, reference = run_template_embedding(config, inputs, reference_embedding, template_mask)
    assert_close(ours, reference, RELATIVE_TOLERANCE)


def test_template_embedding_without_templates_is_zero(config, inputs, reference_embedding):
    template_mask = np.zeros(NUM_TEMPLATES, np.float32)
    ours, reference = run_template_embedding(config, inputs, reference_embedding, template_mask)
    assert float(jnp.abs(reference).max()) == 0.0
    assert torch.count_nonzero(ours) == 0


def test_template_embedding_batch_dimension(config, inputs):
    """A batch of two examples gives each example's own embedding."""
    template_config = config.embeddings_and_evoformer.template
    module = TemplateEmbedding(template_config, config.global_config, PAIR_DIM).eval()
    torch.manual_seed(0)
    for param in module.parameters():
        torch.nn.init.normal_(param, std=0.2)
    batch = torch_batch(inputs["template_batch"])
    other = {k: v.flip(0) for k, v in batch.items()}  # templates in another order, another mask
    query, mask_2d = torch.from_numpy(inputs["query"]), torch.from_numpy(inputs["mask_2d"])
    stacked = {k: torch.stack([batch[k], other[k]]) for k in batch}
    both = module(torch.stack([query, query.flip(-1)]), stacked, torch.stack([mask_2d, mask_2d]))
    torch.testing.assert_close(both[0], module(query, batch, mask_2d), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(both[1], module(query.flip(-1), other, mask_2d), rtol=1e-5, atol=1e-5)
