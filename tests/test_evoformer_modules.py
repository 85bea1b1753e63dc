"""Evoformer modules against AlphaFold's own haiku modules, with the same random parameters.

Every module runs in eval mode on odd shapes (N_seq 5, N_res 11) with masks that have zeros; the
reference is ``alphafold.model.modules`` in float32 with DeepMind's settings. Tolerance: max abs
error <= 1e-4 x the reference's max abs value. Also: the attention kernel API, the kernel setting,
training-mode dropout and activation checkpointing.
"""

import haiku as hk
import jax
import numpy as np
import pytest
import torch
from alphafold.model import layer_stack, modules, prng
from alphafold_reference import (
    assert_close,
    deepmind_monomer_config,
    flat_parameters,
    init_and_randomise,
    random_parameters,
    save_npz,
)

from fastfold import kernels
from fastfold.kernels.attention import attention_torch
from fastfold.model.attention import (
    MSAColumnAttention,
    MSAColumnGlobalAttention,
    MSARowAttentionWithPairBias,
    TriangleAttention,
)
from fastfold.model.evoformer import (
    EvoformerIteration,
    EvoformerStack,
    OuterProductMean,
    Transition,
    TriangleMultiplication,
)
from fastfold.model.extra_msa import ExtraMsaStack
from fastfold.model.params import haiku_params, load_haiku_params, read_npz
from fastfold.model.primitives import shared_dropout

NUM_SEQ, NUM_RES, MSA_DIM, EXTRA_DIM, PAIR_DIM = 5, 11, 32, 16, 24
RELATIVE_TOLERANCE = 1e-4


def small_config():
    """DeepMind's model_1_ptm config with narrower hidden layers (the channels come from the inputs)."""
    cfg = deepmind_monomer_config("model_1_ptm").model
    evoformer = cfg.embeddings_and_evoformer.evoformer
    evoformer.outer_product_mean.num_outer_channel = 8
    evoformer.triangle_multiplication_outgoing.num_intermediate_channel = 12
    evoformer.triangle_multiplication_incoming.num_intermediate_channel = 12
    cfg.embeddings_and_evoformer.update(msa_channel=MSA_DIM, extra_msa_channel=EXTRA_DIM,
                                        pair_channel=PAIR_DIM)
    return cfg


@pytest.fixture(scope="module")
def config():
    return small_config()


@pytest.fixture(scope="module")
def inputs():
    """MSA/pair activations and masks with zeros (a padded last residue, scattered MSA gaps)."""
    rng = np.random.default_rng(7)
    msa_mask = (rng.random((NUM_SEQ, NUM_RES)) < 0.8).astype(np.float32)
    msa_mask[:, -1] = 0.0
    seq_mask = np.ones(NUM_RES, np.float32)
    seq_mask[-1] = 0.0
    return {
        "msa": rng.standard_normal((NUM_SEQ, NUM_RES, MSA_DIM)).astype(np.float32),
        "extra_msa": rng.standard_normal((NUM_SEQ + 2, NUM_RES, EXTRA_DIM)).astype(np.float32),
        "pair": rng.standard_normal((NUM_RES, NUM_RES, PAIR_DIM)).astype(np.float32),
        "msa_mask": msa_mask,
        "extra_msa_mask": (rng.random((NUM_SEQ + 2, NUM_RES)) < 0.8).astype(np.float32),
        "pair_mask": seq_mask[:, None] * seq_mask[None, :],
    }



def run_reference(fn, *args, seed: int = 0):
    """AlphaFold's output of ``fn`` on ``args`` and its random parameters in the flat layout."""
    apply, params = init_and_randomise(fn, *args, seed=seed)
    return jax.tree_util.tree_map(np.asarray, apply(params, *args)), flat_parameters(params)


def loaded(module: torch.nn.Module, flat: dict, prefix: str) -> torch.nn.Module:
    load_haiku_params(module, flat, prefix)
    return module.eval()


def t(array) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array))


# --- kernel API -----------------------------------------------------------------------------------


def test_attention_kernel_matches_formula_and_masks():
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 5, 4, generator=generator), torch.randn(2, 3, 7, 4, generator=generator)
    v, gate = torch.randn(2, 3, 7, 6, generator=generator), torch.randn(2, 3, 5, 6, generator=generator)
    bias = torch.randn(3, 5, 7, generator=generator)
    mask = torch.rand(2, 1, 5, 7, generator=generator) > 0.3
    mask[0, 0, 1] = False  # one fully masked row
    out = kernels.attention(q, k, v, biases=[bias], mask=mask, gate=gate)
    logits = (q.double() / 2.0) @ k.double().transpose(-1, -2) + bias.double()
    weights = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
    expected = (weights @ v.double()) * torch.sigmoid(gate.double())
    partial_rows = mask.expand(2, 3, 5, 7).any(dim=-1)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[partial_rows].double(), expected[partial_rows], atol=1e-6)
    assert not partial_rows.all()


def test_softmax_kernel_with_bias_and_mask():
    x, bias = torch.randn(4, 9), torch.randn(9)
    mask = torch.rand(4, 9) > 0.5
    mask[:, 0] = True
    expected = torch.softmax((x + bias).masked_fill(~mask, float("-inf")), dim=-1)
    assert torch.allclose(kernels.softmax(x, bias=bias, mask=mask), expected, atol=1e-7)


def test_kernel_setting_is_read_at_call_time(monkeypatch):
    q = torch.randn(1, 2, 3, 4)
    monkeypatch.setenv(kernels.KERNEL_ENV_VAR, "torch")
    assert kernels.kernel_setting() is kernels.Kernel.TORCH
    assert torch.equal(kernels.attention(q, q, q), attention_torch(q, q, q))
    monkeypatch.setenv(kernels.KERNEL_ENV_VAR, "cuda")
    with pytest.raises(ValueError, match="expected one of auto, triton, torch"):
        kernels.softmax(q)


# --- single modules vs AlphaFold ------------------------------------------------------------------


def test_msa_row_attention_with_pair_bias(config, inputs):
    c, gc = config.embeddings_and_evoformer.evoformer.msa_row_attention_with_pair_bias, config.global_config
    ref, flat = run_reference(lambda m, mask, z: modules.MSARowAttentionWithPairBias(c, gc)(m, mask, z),
                              inputs["msa"], inputs["msa_mask"], inputs["pair"])
    module = MSARowAttentionWithPairBias(c, gc, MSA_DIM, PAIR_DIM)
    loaded(module, flat, "msa_row_attention_with_pair_bias")
    assert_close(module(t(inputs["msa"]), t(inputs["msa_mask"]), t(inputs["pair"])), ref, RELATIVE_TOLERANCE)


def test_msa_column_attention(config, inputs):
    c, gc = config.embeddings_and_evoformer.evoformer.msa_column_attention, config.global_config
    ref, flat = run_reference(lambda m, mask: modules.MSAColumnAttention(c, gc)(m, mask),
                              inputs["msa"], inputs["msa_mask"])
    module = loaded(MSAColumnAttention(c, gc, MSA_DIM), flat, "msa_column_attention")
    assert_close(module(t(inputs["msa"]), t(inputs["msa_mask"])), ref, RELATIVE_TOLERANCE)


def test_msa_column_global_attention(config, inputs):
    c, gc = config.embeddings_and_evoformer.evoformer.msa_column_attention, config.global_config
    ref, flat = run_reference(lambda m, mask: modules.MSAColumnGlobalAttention(c, gc)(m, mask),
                              inputs["extra_msa"], inputs["extra_msa_mask"])
    module = loaded(MSAColumnGlobalAttention(c, gc, EXTRA_DIM), flat, "msa_column_global_attention")
    assert_close(module(t(inputs["extra_msa"]), t(inputs["extra_msa_mask"])), ref, RELATIVE_TOLERANCE)


@pytest.mark.parametrize("name", ["msa_transition", "pair_transition"])
def test_transition(config, inputs, name):
    c, gc = config.embeddings_and_evoformer.evoformer[name], config.global_config
    act, mask = (inputs["msa"], inputs["msa_mask"]) if name == "msa_transition" else (inputs["pair"],
                                                                                      inputs["pair_mask"])
    ref, flat = run_reference(lambda x, m: modules.Transition(c, gc, name=name)(x, m, is_training=False),
                              act, mask)
    module = loaded(Transition(c, gc, act.shape[-1]), flat, name)
    assert_close(module(t(act)), ref, RELATIVE_TOLERANCE)
    with torch.no_grad():  # the ReLU in the product's epilogue (no derivative: inference only)
        assert_close(module(t(act)), ref, RELATIVE_TOLERANCE)


@pytest.mark.parametrize("chunk_size", [128, 4])
def test_outer_product_mean(config, inputs, chunk_size):
    c, gc = config.embeddings_and_evoformer.evoformer.outer_product_mean, config.global_config
    c = c.copy_and_resolve_references()
    c.chunk_size = chunk_size
    ref, flat = run_reference(
        lambda m, mask: modules.OuterProductMean(c, gc, PAIR_DIM)(m, mask, is_training=False),
        inputs["msa"], inputs["msa_mask"])
    module = loaded(OuterProductMean(c, gc, MSA_DIM, PAIR_DIM), flat, "outer_product_mean")
    assert_close(module(t(inputs["msa"]), t(inputs["msa_mask"])), ref, RELATIVE_TOLERANCE)
    with torch.no_grad():  # the outer products formed (e, c)-major (inference only), also batched
        assert_close(module(t(inputs["msa"]), t(inputs["msa_mask"])), ref, RELATIVE_TOLERANCE)
        batched = module(t(inputs["msa"]).expand(2, -1, -1, -1), t(inputs["msa_mask"]).expand(2, -1, -1))
        assert_close(batched, np.broadcast_to(ref, batched.shape), RELATIVE_TOLERANCE)


@pytest.mark.parametrize("name", ["triangle_multiplication_outgoing", "triangle_multiplication_incoming"])
def test_triangle_multiplication(config, inputs, name):
    c, gc = config.embeddings_and_evoformer.evoformer[name], config.global_config
    ref, flat = run_reference(lambda z, m: modules.TriangleMultiplication(c, gc, name=name)(z, m),
                              inputs["pair"], inputs["pair_mask"])
    module = loaded(TriangleMultiplication(c, gc, PAIR_DIM), flat, name)
    assert_close(module(t(inputs["pair"]), t(inputs["pair_mask"])), ref, RELATIVE_TOLERANCE)


def test_fused_triangle_projections_are_refused(config):
    evoformer = config.embeddings_and_evoformer.evoformer
    c = evoformer.triangle_multiplication_outgoing.copy_and_resolve_references()
    c.fuse_projection_weights = True
    with pytest.raises(ValueError, match="fuse_projection_weights=True"):
        TriangleMultiplication(c, config.global_config, PAIR_DIM)


@pytest.mark.parametrize("name", ["triangle_attention_starting_node", "triangle_attention_ending_node"])
def test_triangle_attention(config, inputs, name):
    c, gc = config.embeddings_and_evoformer.evoformer[name], config.global_config
    ref, flat = run_reference(lambda z, m: modules.TriangleAttention(c, gc, name=name)(z, m),
                              inputs["pair"], inputs["pair_mask"])
    module = loaded(TriangleAttention(c, gc, PAIR_DIM), flat, name)
    assert_close(module(t(inputs["pair"]), t(inputs["pair_mask"])), ref, RELATIVE_TOLERANCE)


# --- blocks and stacks vs AlphaFold ---------------------------------------------------------------


def reference_iteration(config, is_extra_msa: bool, num_block: int = 0):
    """AlphaFold's EvoformerIteration, or a layer stack of ``num_block`` of them, as a haiku function."""
    evoformer, gc = config.embeddings_and_evoformer.evoformer, config.global_config
    name = "extra_msa_stack" if is_extra_msa else "evoformer_iteration"

    def fn(msa, pair, msa_mask, pair_mask):
        iteration = modules.EvoformerIteration(evoformer, gc, is_extra_msa=is_extra_msa, name=name)
        masks = {"msa": msa_mask, "pair": pair_mask}

        def block(carry):
            act, key = carry
            key, subkey = key.split()
            return iteration(act, masks, is_training=False, safe_key=subkey), key

        carry = ({"msa": msa, "pair": pair}, prng.SafeKey(jax.random.PRNGKey(0)))
        out, _ = layer_stack.layer_stack(num_block)(block)(carry) if num_block else block(carry)
        return out["msa"], out["pair"]
    return fn


def iteration_args(inputs, is_extra_msa: bool) -> list:
    msa = ("extra_msa", "extra_msa_mask") if is_extra_msa else ("msa", "msa_mask")
    return [inputs[msa[0]], inputs["pair"], inputs[msa[1]], inputs["pair_mask"]]


@pytest.fixture(scope="module")
def iteration_params(config, inputs):
    """Random parameters of one AlphaFold iteration, regular and extra-MSA (initialised once: haiku's
    eager initialisation is the slow part of these tests)."""
    return {is_extra_msa: init_and_randomise(reference_iteration(config, is_extra_msa),
                                             *iteration_args(inputs, is_extra_msa))[1]
            for is_extra_msa in (False, True)}


def run_stack_reference(config, params, args, is_extra_msa: bool, num_block: int):
    """AlphaFold's output with ``num_block`` differently randomised copies of ``params`` stacked."""
    copies = [random_parameters(params, seed=seed) for seed in range(num_block)]
    stacked = jax.tree_util.tree_map(lambda *layers: np.stack(layers), *copies)
    transformed = hk.transform(reference_iteration(config, is_extra_msa, num_block))
    outputs = jax.jit(lambda p, *a: transformed.apply(p, None, *a))(stacked, *args)
    return [np.asarray(out) for out in outputs], stacked


@pytest.mark.parametrize("outer_product_mean_first", [False, True])
def test_evoformer_iteration(config, inputs, iteration_params, outer_product_mean_first):
    config = config.copy_and_resolve_references()
    config.embeddings_and_evoformer.evoformer.outer_product_mean.first = outer_product_mean_first
    args, params = iteration_args(inputs, False), iteration_params[False]
    transformed = hk.transform(reference_iteration(config, is_extra_msa=False))
    ref_msa, ref_pair = jax.jit(lambda p, *a: transformed.apply(p, None, *a))(params, *args)
    module = loaded(EvoformerIteration(config.embeddings_and_evoformer.evoformer, config.global_config,
                                       MSA_DIM, PAIR_DIM), flat_parameters(params), "evoformer_iteration")
    msa, pair = module(*map(t, args))
    assert_close(msa, np.asarray(ref_msa), RELATIVE_TOLERANCE)
    assert_close(pair, np.asarray(ref_pair), RELATIVE_TOLERANCE)


def test_evoformer_stack_from_npz(config, inputs, iteration_params, tmp_path):
    config = config.copy_and_resolve_references()
    config.embeddings_and_evoformer.evoformer_num_block = 2
    args = iteration_args(inputs, False)
    (ref_msa, ref_pair), params = run_stack_reference(config, iteration_params[False], args, False, 2)
    save_npz(params, tmp_path / "params.npz")
    module = loaded(EvoformerStack(config.embeddings_and_evoformer, config.global_config),
                    read_npz(tmp_path / "params.npz"), "")
    msa, pair = module(*map(t, args))
    assert_close(msa, ref_msa, RELATIVE_TOLERANCE)
    assert_close(pair, ref_pair, RELATIVE_TOLERANCE)


def test_extra_msa_stack(config, inputs, iteration_params):
    config = config.copy_and_resolve_references()
    config.embeddings_and_evoformer.extra_msa_stack_num_block = 2
    args = iteration_args(inputs, True)
    (_, ref_pair), params = run_stack_reference(config, iteration_params[True], args, True, 2)
    stack = ExtraMsaStack(config.embeddings_and_evoformer, config.global_config)
    module = loaded(stack, flat_parameters(params), "")
    assert_close(module(*map(t, args)), ref_pair, RELATIVE_TOLERANCE)


def test_parameter_names_match_haiku(config, iteration_params):
    """Our modules write exactly AlphaFold's keys and shapes (the checks above load them strictly)."""
    evoformer, gc = config.embeddings_and_evoformer.evoformer, config.global_config
    for is_extra_msa, prefix, msa_dim in ((False, "evoformer_iteration", MSA_DIM),
                                          (True, "extra_msa_stack", EXTRA_DIM)):
        ours = haiku_params(EvoformerIteration(evoformer, gc, msa_dim, PAIR_DIM, is_extra_msa), prefix)
        reference = flat_parameters(iteration_params[is_extra_msa])
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in reference.items()}


# --- training mode --------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation, shared_dim", [("per_row", -3), ("per_column", -2)])
def test_shared_dropout_statistics(config, orientation, shared_dim):
    evoformer = config.embeddings_and_evoformer.evoformer
    module_config = evoformer.triangle_attention_starting_node.copy_and_resolve_references()
    module_config.orientation = orientation
    rate = module_config.dropout_rate
    torch.manual_seed(0)
    out = shared_dropout(torch.ones(3, 40, 40, 16), module_config, config.global_config, training=True)
    kept = out != 0
    assert torch.equal(kept, kept.select(shared_dim, 0).unsqueeze(shared_dim).expand_as(kept))
    assert torch.allclose(out[kept], torch.tensor(1.0 / (1.0 - rate)))
    assert abs(1.0 - kept.float().mean().item() - rate) < 0.02
    evaluated = shared_dropout(torch.ones(3, 4, 4, 2), module_config, config.global_config, training=False)
    assert evaluated.eq(1).all()


def test_dropout_only_in_training_and_remat_keeps_results(config, inputs):
    torch.manual_seed(0)
    evoformer, gc = config.embeddings_and_evoformer, config.global_config.copy_and_resolve_references()
    stack_config = evoformer.copy_and_resolve_references()
    stack_config.evoformer_num_block = 2
    stack = EvoformerStack(stack_config, gc)
    for param in stack.parameters():  # AlphaFold zero-initialises the output layers; make updates non-zero
        torch.nn.init.normal_(param, std=0.1)
    args = [t(inputs[k]) for k in ("msa", "pair", "msa_mask", "pair_mask")]
    eval_msa, eval_pair = stack.eval()(*args)

    def train_step(use_remat: bool, deterministic: bool = False):
        gc.use_remat, gc.deterministic = use_remat, deterministic
        torch.manual_seed(1)
        stack.zero_grad()
        msa, pair = stack.train()(*args)
        (msa.square().sum() + pair.square().sum()).backward()
        return msa.detach(), pair.detach(), [p.grad.clone() for p in stack.parameters()]

    msa, pair, grads = train_step(use_remat=False)
    remat_msa, remat_pair, remat_grads = train_step(use_remat=True)
    assert not torch.allclose(pair, eval_pair, atol=1e-3)  # dropout acted
    assert torch.equal(msa, remat_msa) and torch.equal(pair, remat_pair)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(grads, remat_grads, strict=True))
    msa, pair, _ = train_step(use_remat=False, deterministic=True)
    assert torch.allclose(msa, eval_msa, atol=1e-5) and torch.allclose(pair, eval_pair, atol=1e-5)


def test_leading_batch_dimension_and_bfloat16(config, inputs):
    """Two examples in a batch give each example's own result; bfloat16 stays close to float32."""
    evoformer, gc = config.embeddings_and_evoformer.evoformer, config.global_config
    module = EvoformerIteration(evoformer, gc, EXTRA_DIM, PAIR_DIM, is_extra_msa=True).eval()
    torch.manual_seed(0)
    for param in module.parameters():
        torch.nn.init.normal_(param, std=0.2)
    args = [t(inputs[k]) for k in ("extra_msa", "pair", "extra_msa_mask", "pair_mask")]
    flipped = [arg.flip(0) for arg in args]  # a second, different example of the same shapes
    batched = module(*(torch.stack(pair) for pair in zip(args, flipped, strict=True)))
    for index, example in enumerate((args, flipped)):
        for ours, single in zip(batched, module(*example), strict=True):
            torch.testing.assert_close(ours[index], single, rtol=1e-5, atol=1e-5)
    for ours, reference in zip(module(*(arg.bfloat16() for arg in args)), module(*args), strict=True):
        assert ours.dtype == torch.bfloat16
        assert (ours.float() - reference).abs().max() <= 0.03 * reference.abs().max()


def test_kernel_setting_from_the_config_and_the_environment(monkeypatch):
    """The model's config sets the process default; FASTFOLD_KERNEL, when set, wins over it."""
    from fastfold.config import model_config
    from fastfold.model.alphafold import AlphaFold

    monkeypatch.delenv(kernels.KERNEL_ENV_VAR, raising=False)
    monkeypatch.setattr(kernels, "_default", kernels.Kernel.AUTO)
    config = model_config("model_1").model
    config.global_config.kernel = "torch"
    config.embeddings_and_evoformer.evoformer_num_block = 1
    config.embeddings_and_evoformer.extra_msa_stack_num_block = 1
    AlphaFold(config)
    assert kernels.kernel_setting() is kernels.Kernel.TORCH
    monkeypatch.setenv(kernels.KERNEL_ENV_VAR, "auto")
    assert kernels.kernel_setting() is kernels.Kernel.AUTO
    with pytest.raises(ValueError, match="expected one of auto, triton, torch"):
        kernels.set_default_kernel("cuda")
