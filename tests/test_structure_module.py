"""Structure module and invariant point attention against AlphaFold's ``folding`` (JAX, hk.scan fork).

Both run DeepMind's float32 settings on the same random non-zero parameters, loaded into ours from
the published flat-key layout. Padding residues (seq_mask 0) attend with every logit shifted by
-1e5, so float32 rounds their logits to steps of 2^-7 in AlphaFold: only real residues are held to the
tight tolerance, padding ones are checked loosely.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from alphafold.model import folding, prng, quat_affine, r3
from alphafold_reference import (
    assert_close,
    deepmind_monomer_config,
    init_and_randomise,
    r3_to_4x4,
    random_features,
)
from model_inputs import flat_parameters, scale_backbone_update

from fastfold.common.rigid import Rigid, quat_to_rot
from fastfold.model.params import load_haiku_params
from fastfold.model.structure_module import InvariantPointAttention, StructureModule

NUM_RES = 13
SINGLE_CHANNEL, PAIR_CHANNEL = 384, 128


def inputs(seed: int):
    """Random single and pair representations and features with an unknown residue and padding."""
    rng = np.random.default_rng(seed)
    features = random_features(NUM_RES, num_msa=1, num_extra_msa=1, num_templates=1, seed=seed)
    features["seq_mask"][[4, NUM_RES - 2, NUM_RES - 1]] = 0.0
    single = rng.standard_normal((NUM_RES, SINGLE_CHANNEL)).astype(np.float32)
    pair = rng.standard_normal((NUM_RES, NUM_RES, PAIR_CHANNEL)).astype(np.float32)
    batch = {k: features[k] for k in ("aatype", "seq_mask", "atom14_atom_exists", "atom37_atom_exists",
                                      "residx_atom14_to_atom37", "residx_atom37_to_atom14")}
    return single, pair, batch


@pytest.fixture(scope="module")
def config():
    return deepmind_monomer_config("model_1_ptm").model


def test_invariant_point_attention_matches_alphafold(config):
    sm_config = config.heads.structure_module
    rng = np.random.default_rng(0)
    single = rng.standard_normal((NUM_RES, sm_config.num_channel)).astype(np.float32)
    pair = rng.standard_normal((NUM_RES, NUM_RES, PAIR_CHANNEL)).astype(np.float32)
    mask = (rng.random(NUM_RES) < 0.8).astype(np.float32)
    quaternion = rng.standard_normal((NUM_RES, 4)).astype(np.float32)
    quaternion /= np.linalg.norm(quaternion, axis=-1, keepdims=True)
    translation = rng.standard_normal((NUM_RES, 3)).astype(np.float32) * 2.0  # nm

    def ipa(single, pair, mask, quaternion, translation):
        affine = quat_affine.QuatAffine(quaternion, translation, unstack_inputs=True)
        module = folding.InvariantPointAttention(sm_config, config.global_config)
        return module(single, pair, mask[:, None], affine)

    arrays = (single, pair, mask, quaternion, translation)
    apply, params = init_and_randomise(ipa, *arrays, seed=1)
    reference = np.asarray(apply(params, *arrays))

    module = InvariantPointAttention(sm_config, config.global_config, PAIR_CHANNEL)
    load_haiku_params(module, flat_parameters(params), prefix="invariant_point_attention")
    frames = Rigid(quat_to_rot(torch.from_numpy(quaternion)), torch.from_numpy(translation))
    single_t = torch.from_numpy(single).requires_grad_()
    ours = module(single_t, torch.from_numpy(pair), torch.from_numpy(mask), frames)
    real = mask > 0
    error = assert_close(ours[real], reference[real])
    assert_close(ours[~real], reference[~real], relative=1e-2)
    print(f"IPA max abs error {error:.2e} (reference max {np.abs(reference).max():.2f})")

    ours.square().sum().backward()
    assert torch.isfinite(single_t.grad).all() and single_t.grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in module.parameters())


def loss_weights(seed: int = 8):
    """Random weights of a scalar loss on the final atoms and the trajectory's translations."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((NUM_RES, 37, 3)).astype(np.float32),
            rng.standard_normal((8, NUM_RES, 3)).astype(np.float32))


def scalar_loss(outputs: dict, seq_mask, xp=np):
    """sum(w1 * atoms) + sum(w2 * trajectory translations) over real residues, in JAX (xp) or torch."""
    atom_weights, traj_weights = (xp.asarray(w) for w in loss_weights())
    return ((outputs["final_atom_positions"] * atom_weights * seq_mask[:, None, None]).sum()
            + (outputs["traj"][..., 4:] * traj_weights * seq_mask[:, None]).sum())


@pytest.fixture(scope="module")
def structure_outputs(config):
    """AlphaFold's outputs and input gradients, and ours, on the same random parameters and inputs."""
    sm_config = config.heads.structure_module
    single, pair, batch = inputs(seed=3)

    def structure_module(single, pair, batch):
        module = folding.StructureModule(sm_config, config.global_config, compute_loss=True)
        return module({"single": single, "pair": pair}, batch, is_training=False,
                      safe_key=prng.SafeKey(jax.random.PRNGKey(0)))

    apply, params = init_and_randomise(structure_module, single, pair, batch, seed=4)
    scale_backbone_update(params)

    def loss_and_outputs(single, pair):
        outputs = apply(params, single, pair, batch)
        return scalar_loss(outputs, batch["seq_mask"], xp=jnp), outputs

    (_, reference), reference_grads = jax.jit(jax.value_and_grad(
        loss_and_outputs, argnums=(0, 1), has_aux=True))(single, pair)
    reference = jax.tree_util.tree_map(np.asarray, reference)

    module = StructureModule(sm_config, config.global_config, SINGLE_CHANNEL, PAIR_CHANNEL).eval()
    load_haiku_params(module, flat_parameters(params), prefix="structure_module")
    representations = {"single": torch.from_numpy(single).requires_grad_(),
                       "pair": torch.from_numpy(pair).requires_grad_()}
    torch_batch = {k: torch.from_numpy(v) for k, v in batch.items()}
    ours = module(representations, torch_batch)
    scalar_loss(ours, torch_batch["seq_mask"], xp=torch).backward()
    return reference, reference_grads, ours, module, representations, batch


def test_structure_module_matches_alphafold(structure_outputs):
    """Every output on real residues: errors <= 1e-4 x the reference's largest value, positions (A)
    within 1e-3 A; padding residues within 5 % (see the module docstring)."""
    reference, _, ours, _, _, batch = structure_outputs
    real = batch["seq_mask"] > 0
    sidechains = reference["sidechains"]
    per_layer = {  # [num_layer, N, ...]: (ours, reference, absolute tolerance or None for relative)
        "traj quaternions": (ours["traj"][..., :4], reference["traj"][..., :4], None),
        "traj translations": (ours["traj"][..., 4:], reference["traj"][..., 4:], 1e-3),
        "angles_sin_cos": (ours["sidechains"]["angles_sin_cos"], sidechains["angles_sin_cos"], None),
        "unnormalized_angles_sin_cos": (ours["sidechains"]["unnormalized_angles_sin_cos"],
                                        sidechains["unnormalized_angles_sin_cos"], None),
        "atom_pos": (ours["sidechains"]["atom_pos"], r3.vecs_to_tensor(sidechains["atom_pos"]), 1e-3),
        "frames rotations": (ours["sidechains"]["frames"][..., :3, :3],
                             r3_to_4x4(sidechains["frames"])[..., :3, :3], None),
        "frames translations": (ours["sidechains"]["frames"][..., :3, 3],
                                r3_to_4x4(sidechains["frames"])[..., :3, 3], 1e-3),
    }
    final = {  # [N, ...]
        "act": (ours["act"], reference["representations"]["structure_module"], None),
        "final_affines": (ours["final_affines"], reference["final_affines"], 1e-3),
        "final_atom14_positions": (ours["final_atom14_positions"], reference["final_atom14_positions"], 1e-3),
        "final_atom_positions": (ours["final_atom_positions"], reference["final_atom_positions"], 1e-3),
    }
    for outputs, rows, padding in ((per_layer, (slice(None), real), (slice(None), ~real)),
                                   (final, real, ~real)):
        for key, (value, expected, atol) in outputs.items():
            expected = np.asarray(expected)
            relative = 0.0 if atol else 1e-4
            error = assert_close(value[rows], expected[rows], relative=relative, atol=atol or 0.0)
            print(f"{key}: max abs error {error:.2e} (reference max {np.abs(expected[rows]).max():.2f})")
            assert_close(value[padding], expected[padding], relative=0.05)
    np.testing.assert_array_equal(ours["final_atom_mask"].numpy(), reference["final_atom_mask"])
    np.testing.assert_array_equal(ours["final_atom14_mask"].numpy(), reference["final_atom14_mask"])
    assert ours["traj"].shape == (8, NUM_RES, 7)


def test_structure_module_gradients_match_alphafold(structure_outputs):
    """Input gradients of a loss on the atoms and trajectory; they depend on where AlphaFold stops the
    rotation gradient between iterations."""
    _, reference_grads, _, module, representations, _ = structure_outputs
    for name, expected in zip(("single", "pair"), reference_grads, strict=True):
        error = assert_close(representations[name].grad, expected)
        print(f"d loss / d {name}: max abs error {error:.2e} (reference max {np.abs(expected).max():.2e})")
    for name, parameter in module.named_parameters():
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0, name


def test_batched_structure_module(config):
    """A leading batch dimension gives the same as running each member alone."""
    sm_config = config.heads.structure_module.copy_and_resolve_references()
    sm_config.num_layer = 2
    module = StructureModule(sm_config, config.global_config, SINGLE_CHANNEL, PAIR_CHANNEL).eval()
    torch.manual_seed(1)
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=0.02)
    members = [inputs(seed) for seed in (6, 7)]
    stack = lambda i: torch.from_numpy(np.stack([m[i] for m in members]))  # noqa: E731
    batch = {k: torch.from_numpy(np.stack([m[2][k] for m in members])) for k in ("aatype", "seq_mask")}
    with torch.no_grad():
        batched = module({"single": stack(0), "pair": stack(1)}, batch)
        for b, (single, pair, member_batch) in enumerate(members):
            alone = module({"single": torch.from_numpy(single), "pair": torch.from_numpy(pair)},
                           {k: torch.from_numpy(member_batch[k]) for k in ("aatype", "seq_mask")})
            torch.testing.assert_close(batched["final_atom_positions"][b], alone["final_atom_positions"],
                                       rtol=0, atol=1e-4)
            torch.testing.assert_close(batched["traj"][:, b], alone["traj"], rtol=0, atol=1e-5)

