"""AlphaFold's own JAX model as the test reference, with DeepMind's monomer settings.

Every exactness test builds the reference through these functions, so all of them run the same
configuration and the same kind of randomised parameters:

* :func:`deepmind_monomer_config` - ``alphafold-colabfold``'s config with DeepMind's float32 maths;
* :func:`random_parameters` - a haiku module's parameters with every value random and non-zero;
* :func:`save_npz` - those parameters in the published ``params_model_*.npz`` flat-key layout;
* :func:`random_features` - processed eval-mode features of AlphaFold's shapes.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import haiku as hk  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
from alphafold.common import residue_constants as af_constants  # noqa: E402
from alphafold.model import config as af_config  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


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


def random_parameters(init_params, seed: int = 0, constant_scale: float = 0.1):
    """Replace every parameter array by random non-zero values of a sensible size.

    Arrays that the initialiser filled with random numbers keep their spread (which is fan-in
    scaled); arrays it filled with a constant (biases, LayerNorm scales, zero-initialised output
    layers, gates) get that constant plus ``constant_scale`` times a standard normal draw.
    Values that land exactly on zero are moved away from it.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for module_name in sorted(init_params):
        out[module_name] = {}
        for param_name in sorted(init_params[module_name]):
            init = np.asarray(init_params[module_name][param_name], dtype=np.float32)
            spread = float(init.std())
            if spread > 0:
                value = rng.standard_normal(init.shape) * spread
            else:
                value = init + constant_scale * rng.standard_normal(init.shape)
            value = np.where(value == 0, constant_scale, value).astype(np.float32)
            out[module_name][param_name] = value
    return out


def flat_parameters(params) -> dict:
    """Haiku parameters ``{module: {name: array}}`` as DeepMind's flat keys ``{module}//{name}``."""
    return {f"{module}//{name}": np.asarray(value) for module, names in params.items()
            for name, value in names.items()}


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
    features follow from them through AlphaFold's own residue tables.

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
