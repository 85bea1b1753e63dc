"""Chunked computation equals unchunked computation: the utility itself and every module that chunks."""

import numpy as np
import pytest
import torch
from alphafold_reference import deepmind_monomer_config, random_features

from fastfold.model.attention import (
    MSAColumnAttention,
    MSAColumnGlobalAttention,
    MSARowAttentionWithPairBias,
    TriangleAttention,
)
from fastfold.model.chunking import apply_in_chunks, inference_chunk_size
from fastfold.model.evoformer import EvoformerIteration, OuterProductMean, Transition
from fastfold.model.template import TemplateEmbedding

NUM_SEQ, NUM_RES, MSA_DIM, PAIR_DIM = 7, 13, 16, 8


def test_apply_in_chunks_equals_one_call():
    x, y, shared = torch.randn(2, 9, 5), torch.randn(9, 1), torch.randn(5)
    broadcast = torch.randn(2, 1, 5)

    def fn(a, b, c, d):
        return (a * b + c + d).transpose(0, 1)  # [9, 2, 5]: the chunked dimension moves to 0

    expected = fn(x, y, shared, broadcast)
    for chunk_size in (None, 1, 2, 4, 9, 100):
        out = apply_in_chunks(fn, [x, y, shared, broadcast], dims=[-2, -2, None, -2], chunk_size=chunk_size,
                              out_dim=0)
        assert torch.equal(out, expected), chunk_size


def test_apply_in_chunks_slices_and_rejects_bad_arguments():
    calls = []

    def fn(a):
        calls.append(a.shape[0])
        return a

    apply_in_chunks(fn, [torch.zeros(7, 3)], dims=[0], chunk_size=3)
    assert calls == [3, 3, 1]
    with pytest.raises(ValueError, match="different sizes"):
        apply_in_chunks(torch.add, [torch.zeros(4), torch.zeros(5)], dims=[0, 0], chunk_size=2)
    with pytest.raises(ValueError, match="positive"):
        apply_in_chunks(fn, [torch.zeros(4)], dims=[0], chunk_size=0)


def test_inference_chunk_size_follows_alphafold():
    gc = deepmind_monomer_config().model.global_config
    assert inference_chunk_size(gc, training=False) == gc.subbatch_size == 4
    assert inference_chunk_size(gc, training=True) is None


@pytest.fixture(scope="module")
def config():
    cfg = deepmind_monomer_config("model_1_ptm").model
    evoformer = cfg.embeddings_and_evoformer.evoformer
    evoformer.outer_product_mean.num_outer_channel = 4
    evoformer.triangle_multiplication_outgoing.num_intermediate_channel = 8
    evoformer.triangle_multiplication_incoming.num_intermediate_channel = 8
    return cfg


@pytest.fixture(scope="module")
def inputs():
    generator = torch.Generator().manual_seed(0)
    msa_mask = (torch.rand(NUM_SEQ, NUM_RES, generator=generator) < 0.8).float()
    pair_mask = (torch.rand(NUM_RES, NUM_RES, generator=generator) < 0.9).float()
    return {"msa": torch.randn(NUM_SEQ, NUM_RES, MSA_DIM, generator=generator),
            "pair": torch.randn(NUM_RES, NUM_RES, PAIR_DIM, generator=generator),
            "msa_mask": msa_mask, "pair_mask": pair_mask}


def randomised(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` in eval mode with every parameter random (AlphaFold zero-initialises output layers)."""
    torch.manual_seed(1)
    for param in module.parameters():
        torch.nn.init.normal_(param, std=0.3)
    return module.eval()


def assert_chunking_invariant(module, chunk_config, key: str, *args):
    """Run ``module`` with ``chunk_config[key]`` = None, then small sizes; the outputs must agree."""
    chunk_config[key] = None
    expected = module(*args)
    for chunk_size in (1, 3):
        chunk_config[key] = chunk_size
        out = module(*args)
        for ours, reference in zip(out if isinstance(out, tuple) else [out],
                                   expected if isinstance(expected, tuple) else [expected], strict=True):
            torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


_TRIANGLE_ATTENTION = (lambda c, gc: TriangleAttention(c, gc, PAIR_DIM), ("pair", "pair_mask"))
MODULES = {  # name -> (module factory (config node, global config), names of its inputs)
    "msa_row_attention_with_pair_bias": (lambda c, gc: MSARowAttentionWithPairBias(c, gc, MSA_DIM, PAIR_DIM),
                                         ("msa", "msa_mask", "pair")),
    "msa_column_attention": (lambda c, gc: MSAColumnAttention(c, gc, MSA_DIM), ("msa", "msa_mask")),
    "msa_transition": (lambda c, gc: Transition(c, gc, MSA_DIM), ("msa",)),
    "pair_transition": (lambda c, gc: Transition(c, gc, PAIR_DIM), ("pair",)),
    "triangle_attention_starting_node": _TRIANGLE_ATTENTION,
    "triangle_attention_ending_node": _TRIANGLE_ATTENTION,
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_chunking(config, inputs, name):
    gc = config.global_config.copy_and_resolve_references()
    factory, input_names = MODULES[name]
    module = randomised(factory(config.embeddings_and_evoformer.evoformer[name], gc))
    assert_chunking_invariant(module, gc, "subbatch_size", *(inputs[k] for k in input_names))


def test_msa_column_global_attention_chunking(config, inputs):
    gc = config.global_config.copy_and_resolve_references()
    module_config = config.embeddings_and_evoformer.evoformer.msa_column_attention
    module = randomised(MSAColumnGlobalAttention(module_config, gc, MSA_DIM))
    assert_chunking_invariant(module, gc, "subbatch_size", inputs["msa"], inputs["msa_mask"])


def test_outer_product_mean_chunking(config, inputs):
    opm_config = config.embeddings_and_evoformer.evoformer.outer_product_mean.copy_and_resolve_references()
    module = randomised(OuterProductMean(opm_config, config.global_config, MSA_DIM, PAIR_DIM))
    assert_chunking_invariant(module, opm_config, "chunk_size", inputs["msa"], inputs["msa_mask"])


def test_evoformer_iteration_chunking(config, inputs):
    gc = config.global_config.copy_and_resolve_references()
    evoformer = config.embeddings_and_evoformer.evoformer
    module = randomised(EvoformerIteration(evoformer, gc, MSA_DIM, PAIR_DIM))
    args = [inputs[k] for k in ("msa", "pair", "msa_mask", "pair_mask")]
    assert_chunking_invariant(module, gc, "subbatch_size", *args)


def test_template_embedding_chunking(config):
    template_config = config.embeddings_and_evoformer.template.copy_and_resolve_references()
    template_config.template_pair_stack.num_block = 1
    features = random_features(NUM_RES, num_msa=1, num_extra_msa=1, num_templates=2, seed=3)
    batch = {k: torch.from_numpy(np.asarray(v)) for k, v in features.items() if k.startswith("template_")}
    module = randomised(TemplateEmbedding(template_config, config.global_config, PAIR_DIM))
    query, mask_2d = torch.randn(NUM_RES, NUM_RES, PAIR_DIM), torch.ones(NUM_RES, NUM_RES)
    assert_chunking_invariant(module, template_config, "subbatch_size", query, batch, mask_2d)
