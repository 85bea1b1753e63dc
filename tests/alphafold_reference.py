"""AlphaFold's own JAX model as the test reference, with DeepMind's monomer settings.

Every exactness test builds the reference through these functions, so all of them run the same
configuration and the same kind of randomised parameters:

* :func:`deepmind_monomer_config` - ``alphafold-colabfold``'s config with DeepMind's float32 maths;
* :func:`model_inputs.random_parameters` - parameters with every value random and non-zero;
* :func:`save_npz` - those parameters in the published ``params_model_*.npz`` flat-key layout;
* :func:`random_features` - processed eval-mode features of AlphaFold's shapes;
* :func:`model_inputs.real_features` - features made by our data pipeline from real files;
* :func:`run_alphafold` - AlphaFold's whole model, recycling driven as DeepMind's eval loop does.

and :func:`assert_close`, :func:`r3_to_4x4`. Inputs that need no JAX come from :mod:`model_inputs`
(GPU tests use them where JAX is not installed).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import haiku as hk  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
from alphafold.common import residue_constants as af_constants  # noqa: E402
from alphafold.model import config as af_config  # noqa: E402
from alphafold.model import modules as af_modules  # noqa: E402
from alphafold.model import r3  # noqa: E402
from model_inputs import flat_parameters, random_parameters  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

# XLA options for compiling a whole model: compile time dominates at test sizes, so optimise little.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def deepmind_monomer_config(name: str = "model_1_ptm"):
    """AlphaFold's config for ``name`` with the fork's defaults set back to DeepMind's.

    ColabFold's fork turns on bfloat16 and fused triangle projections; DeepMind's monomer models
    run in float32 with separate left/right projections (the published parameter names).
    """
    cfg = af_config.model_config(name)
    cfg.model.global_config.bfloat16 = False
    evoformer_config = cfg.model.embeddings_and_evoformer
    for stack in (evoformer_config.evoformer, evoformer_config.template.template_pair_stack):
        stack.triangle_multiplication_outgoing.fuse_projection_weights = False
        stack.triangle_multiplication_incoming.fuse_projection_weights = False
    return cfg


def save_npz(params, path) -> None:
    """Write haiku parameters as DeepMind publishes them (see :func:`flat_parameters`)."""
    np.savez(path, **flat_parameters(params))


def assert_close(ours, reference, relative: float = 1e-4, atol: float = 0.0) -> float:
    """Assert max |ours - reference| <= relative * max |reference| + atol; return the max error."""
    ours = ours.detach().cpu().numpy() if hasattr(ours, "detach") else np.asarray(ours)
    reference = np.asarray(reference)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    error = float(np.abs(ours - reference).max()) if ours.size else 0.0
    bound = relative * float(np.abs(reference).max(initial=0.0)) + atol
    assert error <= bound, f"max abs error {error:.3g} > bound {bound:.3g}"
    return error


# Representations and head logits that the end-to-end tests hold to a bound relative to their max abs.
RELATIVE_OUTPUTS = [
    ("representations", "single"), ("representations", "pair"), ("representations", "msa"),
    ("representations", "msa_first_row"), ("representations", "structure_module"),
    ("distogram", "logits"), ("masked_msa", "logits"), ("experimentally_resolved", "logits"),
    ("predicted_lddt", "logits"),
]


def max_error(actual, expected) -> float:
    """max |actual - expected| of a torch tensor against a numpy/jax array."""
    return float(np.abs(actual.detach().cpu().numpy() - np.asarray(expected)).max())


def final_output_errors(actual: dict, expected: dict) -> dict:
    """Max abs errors of our AlphaFold outputs against the reference's: atoms (A), pLDDT, PAE (A), pTM."""
    return {
        "final_atom_positions": max_error(actual["structure_module"]["final_atom_positions"],
                                          expected["structure_module"]["final_atom_positions"]),
        "plddt": max_error(actual["plddt"], expected["plddt"]),
        "pae": max_error(actual["pae"], expected["predicted_aligned_error"]),
        "ptm": max_error(actual["ptm"], expected["ptm"]),
    }


def relative_output_errors(actual: dict, expected: dict, max_scale: float = float("inf")) -> dict:
    """Each of :data:`RELATIVE_OUTPUTS`: max abs error / the reference's max abs (in (0, max_scale))."""
    relative = {}
    for output_path in RELATIVE_OUTPUTS:
        ours, reference = actual, expected
        for key in output_path:
            ours, reference = ours[key], reference[key]
        scale = float(np.abs(reference).max())
        assert 0 < scale < max_scale, (output_path, scale)
        relative["/".join(output_path)] = max_error(ours, reference) / scale
    return relative


def r3_to_4x4(rigids) -> np.ndarray:
    """AlphaFold's ``r3.Rigids`` as homogeneous matrices ``[*, 4, 4]``."""
    flat = np.asarray(r3.rigids_to_tensor_flat12(rigids))
    out = np.zeros(flat.shape[:-1] + (4, 4), np.float32)
    out[..., :3, :3] = flat[..., :9].reshape(flat.shape[:-1] + (3, 3))
    out[..., :3, 3] = flat[..., 9:]
    out[..., 3, 3] = 1.0
    return out


def init_and_randomise(fn, *args, seed: int = 0):
    """Transform ``fn``, initialise it on ``args`` and return (apply, random non-zero params)."""
    transformed = hk.transform(fn)
    # Jitted: haiku's eager initialisation of a scanned module takes tens of seconds on CPU.
    init_params = jax.jit(transformed.init)(jax.random.PRNGKey(seed), *args)
    params = random_parameters(jax.tree_util.tree_map(np.asarray, init_params), seed=seed)
    apply = jax.jit(lambda p, *a: transformed.apply(p, None, *a))
    return apply, params


def random_features(num_res: int, num_msa: int, num_extra_msa: int, num_templates: int,
                    seed: int = 0, unknown_residue: bool = True):
    """Processed eval-mode features (AlphaFold's names and shapes, no ensemble dimension).

    Residue types are random, with one unknown residue (X, index 20) when asked; the atom-layout
    features follow from them through AlphaFold's own residue tables. Every template's first N atom
    sits at (1, 0, 0) (see :func:`_define_first_pre_omega`).

    Returns a dict of numpy arrays, e.g. ``msa_feat`` [N_seq, N_res, 49], ``target_feat``
    [N_res, 22], ``template_all_atom_positions`` [N_templ, N_res, 37, 3].
    """
    rng = np.random.default_rng(seed)
    aatype = rng.integers(0, 20, num_res)
    if unknown_residue:
        aatype[num_res // 2] = 20
    restype_atom14_to_atom37, restype_atom37_to_atom14 = _atom_index_tables()
    atom37_exists = np.concatenate([af_constants.restype_atom37_mask, np.zeros((1, 37))])
    atom14_exists = np.concatenate([np.asarray(af_constants.restype_atom14_mask), np.zeros((1, 14))])

    msa = rng.integers(0, 22, (num_msa, num_res))
    msa[0] = aatype
    msa_feat = np.zeros((num_msa, num_res, 49), np.float32)
    msa_feat[..., :23] = np.eye(23)[msa]
    msa_feat[..., 23] = rng.random((num_msa, num_res)) < 0.2
    msa_feat[..., 24] = rng.random((num_msa, num_res))
    msa_feat[..., 25:48] = rng.dirichlet(np.ones(23), (num_msa, num_res))
    msa_feat[..., 48] = rng.random((num_msa, num_res))
    target_feat = np.zeros((num_res, 22), np.float32)
    target_feat[np.arange(num_res), aatype + 1] = 1.0

    template_aatype = rng.integers(0, 21, (num_templates, num_res))
    template_positions = rng.standard_normal((num_templates, num_res, 37, 3)).astype(np.float32) * 3.0
    template_positions += np.arange(num_res)[None, :, None, None] * np.array([3.8, 0.0, 0.0])
    _define_first_pre_omega(template_positions)
    template_masks = atom37_exists[template_aatype].astype(np.float32)
    template_masks *= rng.random(template_masks.shape) < 0.9
    cb_index = af_constants.atom_order["CB"]
    ca_index = af_constants.atom_order["CA"]
    is_gly = template_aatype == af_constants.restype_order["G"]
    pseudo_beta_index = np.where(is_gly, ca_index, cb_index)
    template_pseudo_beta = np.take_along_axis(
        template_positions, pseudo_beta_index[..., None, None], axis=-2)[..., 0, :]
    template_pseudo_beta_mask = np.take_along_axis(template_masks, pseudo_beta_index[..., None], -1)[..., 0]

    return {
        "aatype": aatype.astype(np.int32),
        "residue_index": np.arange(num_res, dtype=np.int32),
        "seq_length": np.array(num_res, np.int32),
        "seq_mask": np.ones(num_res, np.float32),
        "target_feat": target_feat,
        "msa_feat": msa_feat,
        "msa_mask": (rng.random((num_msa, num_res)) < 0.95).astype(np.float32),
        "bert_mask": (rng.random((num_msa, num_res)) < 0.15).astype(np.float32),
        "true_msa": msa.astype(np.int32),
        "extra_msa": rng.integers(0, 22, (num_extra_msa, num_res)).astype(np.int32),
        "extra_msa_mask": (rng.random((num_extra_msa, num_res)) < 0.95).astype(np.float32),
        "extra_has_deletion": (rng.random((num_extra_msa, num_res)) < 0.2).astype(np.float32),
        "extra_deletion_value": rng.random((num_extra_msa, num_res)).astype(np.float32),
        "template_aatype": template_aatype.astype(np.int32),
        "template_all_atom_positions": template_positions,
        "template_all_atom_masks": template_masks,
        "template_mask": np.ones(num_templates, np.float32),
        "template_pseudo_beta": template_pseudo_beta.astype(np.float32),
        "template_pseudo_beta_mask": template_pseudo_beta_mask.astype(np.float32),
        "atom14_atom_exists": atom14_exists[aatype].astype(np.float32),
        "atom37_atom_exists": atom37_exists[aatype].astype(np.float32),
        "residx_atom14_to_atom37": restype_atom14_to_atom37[aatype],
        "residx_atom37_to_atom14": restype_atom37_to_atom14[aatype],
    }


def _define_first_pre_omega(template_positions: np.ndarray) -> None:
    """Put every template's first N atom at (1, 0, 0) in place, so that its pre-omega features are zero.

    AlphaFold computes the pre-omega torsion of residue 0 against zero-padded previous atoms: a
    degenerate frame whose sin/cos is amplified rounding noise (different under jit and eager in
    JAX itself). The angle is masked, but its features still enter ``template_single_embedding``.
    With N on a unit axis the Gram-Schmidt step cancels exactly and both codes give zeros.
    template_positions [N_templ, N_res, 37, 3].
    """
    template_positions[:, 0, af_constants.atom_order["N"]] = (1.0, 0.0, 0.0)


def run_alphafold(model_config, params, features: dict, num_iterations: int) -> dict:
    """AlphaFold's (the fork's) model as DeepMind's eval loop runs it; the last iteration's outputs.

    Iteration ``r`` is one call on feature slice ``[r]`` with the previous call's ``prev`` (zeros
    first), compiled once with :data:`FAST_COMPILE`. The parameter tree is checked against haiku's,
    shape by shape. ``features`` [N_iter, ...] as from ``model_inputs.real_features``; returns numpy arrays
    with the representations.
    """
    def forward(batch):
        return af_modules.AlphaFold(model_config)(batch, is_training=False, return_representations=True)

    transformed = hk.transform(forward)
    evoformer_config = model_config.embeddings_and_evoformer
    num_res = features["aatype"].shape[-1]
    prev = {"prev_pos": np.zeros((num_res, 37, 3), np.float32),
            "prev_msa_first_row": np.zeros((num_res, evoformer_config.msa_channel), np.float32),
            "prev_pair": np.zeros((num_res, num_res, evoformer_config.pair_channel), np.float32)}
    first_slice = {key: value[:1] for key, value in features.items()}
    expected_shapes = jax.eval_shape(transformed.init, jax.random.PRNGKey(0), {**first_slice, "prev": prev})
    assert jax.tree_util.tree_map(lambda x: x.shape, expected_shapes) == jax.tree_util.tree_map(
        np.shape, params), "our parameter tree differs from haiku's"

    apply = None
    for iteration in range(num_iterations):
        batch = {key: value[iteration:iteration + 1] for key, value in features.items()}
        inputs = (params, jax.random.PRNGKey(iteration), {**batch, "prev": prev})
        if apply is None:
            apply = jax.jit(transformed.apply).lower(*inputs).compile(FAST_COMPILE)
        outputs = apply(*inputs)
        prev = outputs["prev"]
    return jax.tree_util.tree_map(np.asarray, outputs)


def _atom_index_tables():
    """AlphaFold's per-residue-type atom14 <-> atom37 index tables, [21, 14] and [21, 37]."""
    to37, to14 = [], []
    for restype in af_constants.restypes:
        names = af_constants.restype_name_to_atom14_names[af_constants.restype_1to3[restype]]
        to37.append([af_constants.atom_order[n] if n else 0 for n in names])
        index14 = {n: i for i, n in enumerate(names)}
        to14.append([index14.get(n, 0) for n in af_constants.atom_types])
    to37.append([0] * 14)
    to14.append([0] * 37)
    return np.array(to37, np.int32), np.array(to14, np.int32)
