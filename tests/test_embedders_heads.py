"""Embedders, heads and confidence metrics against AlphaFold's JAX code on random non-zero parameters.

The embedders are inline layers of haiku's ``EmbeddingsAndEvoformer``; the reference values are
the inputs that its first extra-MSA and Evoformer blocks receive, recorded while it runs.
"""

import functools

import haiku as hk
import jax
import numpy as np
import pytest
import torch
from alphafold.common import confidence as af_confidence
from alphafold.model import modules as af_modules
from alphafold_reference import assert_close, deepmind_monomer_config, init_and_randomise, random_features
from model_inputs import as_torch, flat_parameters, random_parameters

from fastfold.model import heads
from fastfold.model.all_atom import pseudo_beta
from fastfold.model.embedders import (
    ExtraMsaEmbedder,
    InputEmbedder,
    RecyclingEmbedder,
    RelativePositionEncoding,
    TemplateSingleEmbedder,
    distogram_one_hot,
)
from fastfold.model.params import load_haiku_params

NUM_RES, NUM_MSA, NUM_EXTRA, NUM_TEMPL = 14, 5, 7, 2


# ------------------------------------------------------------------------------------------------ embedders

@pytest.fixture(scope="module")
def embedding_run():
    """Haiku's EmbeddingsAndEvoformer (model_1_ptm: template rows) on random features and recycled inputs.

    Returns (config, flat params, numpy features, records): records hold the activations and masks
    that enter the extra-MSA stack and the Evoformer stack.
    """
    cfg = deepmind_monomer_config("model_1_ptm")
    config = cfg.model.embeddings_and_evoformer
    config.evoformer_num_block = 1
    config.extra_msa_stack_num_block = 1
    config.template.template_pair_stack.num_block = 1
    features = random_features(NUM_RES, NUM_MSA, NUM_EXTRA, NUM_TEMPL, seed=3)
    rng = np.random.default_rng(4)
    features["prev_pos"] = (rng.standard_normal((NUM_RES, 37, 3)) * 8).astype(np.float32)
    features["prev_msa_first_row"] = rng.standard_normal((NUM_RES, config.msa_channel)).astype(np.float32)
    features["prev_pair"] = rng.standard_normal((NUM_RES, NUM_RES, config.pair_channel)).astype(np.float32)

    records = {}

    def store(name, value):
        records.setdefault(name, jax.tree_util.tree_map(np.asarray, value))

    def interceptor(next_fun, args, kwargs, context):
        # Record the inputs of the stacks; skip the stacks and the template pair embedding (tested
        # with their modules), so that only the embedders run and the pair input is theirs alone.
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        name = context.module.module_name.split("/")[-1]
        if name in ("extra_msa_stack", "evoformer_iteration"):
            jax.debug.callback(functools.partial(store, name), (kwargs["activations"], kwargs["masks"]))
            return kwargs["activations"]
        if name == "template_embedding":
            return jax.numpy.zeros_like(args[0])
        return next_fun(*args, **kwargs)

    def embed(batch):
        module = af_modules.EmbeddingsAndEvoformer(config, cfg.model.global_config)
        with hk.intercept_methods(interceptor):
            return module(batch, is_training=False)

    transformed = hk.transform(embed)
    init_params = jax.jit(transformed.init)(jax.random.PRNGKey(5), features)
    params = random_parameters(jax.tree_util.tree_map(np.asarray, init_params), seed=5)
    jax.effects_barrier()
    records.clear()  # initialisation ran the module too
    jax.block_until_ready(jax.jit(transformed.apply)(params, jax.random.PRNGKey(0), features))
    jax.effects_barrier()
    return cfg, flat_parameters(params), features, records


def _load(module, flat):
    load_haiku_params(module, flat, prefix="evoformer", strict=False)
    return module


def test_input_relpos_recycling_and_extra_msa_embedders(embedding_run):
    """Algorithms 3, 4, 5, 32 and Algorithm 2 lines 14-15 against the extra-MSA stack's input."""
    cfg, flat, features, records = embedding_run
    config, global_config = cfg.model.embeddings_and_evoformer, cfg.model.global_config
    batch = as_torch(features)
    input_embedder = _load(InputEmbedder(config, global_config), flat)
    recycling = _load(RecyclingEmbedder(config, global_config), flat)
    relpos = _load(RelativePositionEncoding(config, global_config), flat)
    extra = _load(ExtraMsaEmbedder(config, global_config), flat)
    with torch.no_grad():
        msa, pair = input_embedder(batch["target_feat"], batch["msa_feat"])
        msa, pair = recycling(msa, pair, batch["aatype"], batch["prev_pos"], batch["prev_msa_first_row"],
                              batch["prev_pair"])
        pair = pair + relpos(batch["residue_index"])
        extra_msa = extra(batch["extra_msa"], batch["extra_has_deletion"], batch["extra_deletion_value"])

    extra_activations, extra_masks = records["extra_msa_stack"]
    assert_close(extra_msa, extra_activations["msa"])
    assert_close(pair, extra_activations["pair"])
    evoformer_activations, _ = records["evoformer_iteration"]
    assert_close(msa, evoformer_activations["msa"][:NUM_MSA])
    # The prev_pos distogram is non-trivial: several bins are hit.
    distogram = distogram_one_hot(pseudo_beta(batch["aatype"], batch["prev_pos"]), **config.prev_pos)
    assert len(torch.unique(distogram.argmax(-1))) > 3


def test_template_single_embedder(embedding_run):
    """Algorithm 2 lines 7-8: template rows appended to the MSA, and their mask."""
    cfg, flat, features, records = embedding_run
    config, global_config = cfg.model.embeddings_and_evoformer, cfg.model.global_config
    batch = as_torch(features)
    embedder = _load(TemplateSingleEmbedder(config, global_config), flat)
    with torch.no_grad():
        rows, mask = embedder(batch["template_aatype"], batch["template_all_atom_positions"],
                              batch["template_all_atom_masks"])
    evoformer_activations, evoformer_masks = records["evoformer_iteration"]
    assert_close(rows, evoformer_activations["msa"][NUM_MSA:])
    np.testing.assert_array_equal(mask.numpy(), evoformer_masks["msa"][NUM_MSA:])


def test_recycled_inputs_are_detached():
    """Algorithm 2: no gradient flows into the previous iteration's outputs."""
    cfg = deepmind_monomer_config("model_1")
    config = cfg.model.embeddings_and_evoformer
    recycling = RecyclingEmbedder(config, cfg.model.global_config)
    prev_pos = torch.randn(6, 37, 3, requires_grad=True)
    prev_row = torch.randn(6, config.msa_channel, requires_grad=True)
    prev_pair = torch.randn(6, 6, config.pair_channel, requires_grad=True)
    msa, pair = torch.zeros(3, 6, config.msa_channel), torch.zeros(6, 6, config.pair_channel)
    msa, pair = recycling(msa, pair, torch.zeros(6, dtype=torch.long), prev_pos, prev_row, prev_pair)
    (msa.sum() + pair.sum()).backward()
    assert prev_pos.grad is None and prev_row.grad is None and prev_pair.grad is None
    assert recycling.prev_pair_norm.scale.grad is not None


# ------------------------------------------------------------------------------------------------ heads

HEADS = {
    "distogram": (af_modules.DistogramHead, heads.DistogramHead, "pair_channel"),
    "masked_msa": (af_modules.MaskedMsaHead, heads.MaskedMsaHead, "msa_channel"),
    "predicted_lddt": (af_modules.PredictedLDDTHead, heads.PredictedLDDTHead, "structure_channel"),
    "predicted_aligned_error": (af_modules.PredictedAlignedErrorHead, heads.PredictedAlignedErrorHead,
                                "pair_channel"),
    "experimentally_resolved": (af_modules.ExperimentallyResolvedHead, heads.ExperimentallyResolvedHead,
                                "seq_channel"),
}


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_matches_alphafold(name):
    cfg = deepmind_monomer_config("model_1_ptm")
    model_config = cfg.model
    evoformer_config = model_config.embeddings_and_evoformer
    channels = {"pair_channel": evoformer_config.pair_channel, "msa_channel": evoformer_config.msa_channel,
                "seq_channel": evoformer_config.seq_channel,
                "structure_channel": model_config.heads.structure_module.num_channel}
    rng = np.random.default_rng(7)
    representations = {
        "msa": rng.standard_normal((NUM_MSA, NUM_RES, channels["msa_channel"])),
        "pair": rng.standard_normal((NUM_RES, NUM_RES, channels["pair_channel"])),
        "single": rng.standard_normal((NUM_RES, channels["seq_channel"])),
        "structure_module": rng.standard_normal((NUM_RES, channels["structure_channel"])),
    }
    representations = {key: value.astype(np.float32) for key, value in representations.items()}
    reference_class, our_class, channel = HEADS[name]
    head_config = model_config.heads[name]
    apply, params = init_and_randomise(
        lambda reps: reference_class(head_config, model_config.global_config)(reps, {}, False),
        representations, seed=11)
    expected = apply(params, representations)
    (module_name,) = {key.split("/")[0] for key in params}
    head = our_class(head_config, model_config.global_config, channels[channel])
    load_haiku_params(head, flat_parameters(params), prefix=module_name)
    with torch.no_grad():
        actual = head(as_torch(representations))
    assert sorted(actual) == sorted(expected)
    for key in expected:
        assert_close(actual[key], expected[key])


# ------------------------------------------------------------------------------------------------ confidence

def test_confidence_metrics_match_alphafold():
    rng = np.random.default_rng(13)
    plddt_logits = (rng.standard_normal((NUM_RES, 50)) * 3).astype(np.float32)
    pae_logits = (rng.standard_normal((NUM_RES, NUM_RES, 64)) * 3).astype(np.float32)
    breaks = np.linspace(0.0, 31.0, 63).astype(np.float32)
    seq_mask = np.ones(NUM_RES, np.float32)
    seq_mask[-3:] = 0.0
    outputs = {"predicted_lddt": {"logits": plddt_logits},
               "predicted_aligned_error": {"logits": pae_logits, "breaks": breaks}}
    expected = af_confidence.get_confidence_metrics(outputs, seq_mask)
    ours = heads.confidence_metrics(
        {"predicted_lddt": {"logits": torch.from_numpy(plddt_logits)},
         "predicted_aligned_error": {"logits": torch.from_numpy(pae_logits),
                                     "breaks": torch.from_numpy(breaks)}},
        torch.from_numpy(seq_mask))
    assert_close(ours["plddt"], expected["plddt"], relative=1e-6)
    assert_close(ours["mean_plddt"], expected["mean_plddt"], relative=1e-6)
    assert_close(ours["pae"], expected["predicted_aligned_error"], relative=1e-6)
    assert_close(ours["aligned_confidence_probs"], expected["aligned_confidence_probs"], relative=1e-6)
    assert_close(ours["max_predicted_aligned_error"], expected["max_predicted_aligned_error"], relative=1e-6)
    assert_close(ours["ptm"], expected["ptm"], relative=1e-6)
    asym_id = np.repeat([0, 1], NUM_RES // 2)
    iptm = af_confidence.predicted_tm_score(pae_logits, breaks, seq_mask, asym_id=asym_id)
    ours_iptm = heads.predicted_tm_score(torch.from_numpy(pae_logits), torch.from_numpy(breaks),
                                         torch.from_numpy(seq_mask), torch.from_numpy(asym_id))
    assert_close(ours_iptm, iptm, relative=1e-6)
