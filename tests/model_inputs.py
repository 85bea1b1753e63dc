"""Inputs of model tests that need no JAX: random non-zero parameters and features from real files.

Exactness tests feed the same values to AlphaFold's JAX modules (:mod:`alphafold_reference`); GPU
tests use them where JAX is not installed. Parameter trees are haiku's ``{module path: {name: array}}``;
DeepMind's files are flat, ``{module path}//{name}``.
"""

from pathlib import Path

import numpy as np
import torch

from fastfold.data import Msa, read_mmcif, read_stockholm
from fastfold.data.features import make_msa_features, make_sequence_features
from fastfold.data.pipeline import process_features
from fastfold.data.templates import stack_template_features, template_features_from_chain
from fastfold.model.params import haiku_params, load_haiku_params

DATA = Path(__file__).parent / "data"


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


def nested_parameters(flat: dict) -> dict:
    """DeepMind's flat keys ``{module}//{name}`` as haiku's ``{module: {name: array}}``."""
    tree = {}
    for key, value in flat.items():
        module, name = key.split("//")
        tree.setdefault(module, {})[name] = value
    return tree


def scale_backbone_update(params, factor: float = 0.1) -> None:
    """Scale the structure module's randomised backbone update (``.../fold_iteration/affine_update``)
    in place, where the tree has one.

    Randomised, AlphaFold's zero-initialised backbone update moves the frames by about 2 nm per
    iteration and spreads 13-30 residues over hundreds of Angstrom; a tenth of it keeps random
    structures protein-sized (CA-CA distances of 1-35 A), so that distograms spread over their bins
    and an absolute tolerance in Angstrom tests float32 rounding rather than the size of the numbers.
    """
    for module in params:
        if module.endswith("fold_iteration/affine_update"):
            for name in params[module]:
                params[module][name] = (params[module][name] * np.float32(factor)).astype(np.float32)


def random_module_parameters(module: torch.nn.Module, prefix: str, seed: int,
                             constant_scale: float = 0.1) -> dict:
    """:func:`random_parameters` for one of our modules, as haiku's tree under ``prefix``.

    Its initial values decide what is random and what constant; the backbone update, if any, is
    scaled by :func:`scale_backbone_update`.
    """
    tree = nested_parameters(haiku_params(module, prefix))
    params = random_parameters(tree, seed=seed, constant_scale=constant_scale)
    scale_backbone_update(params)
    return params


def randomise(module: torch.nn.Module, seed: int, constant_scale: float = 0.1) -> torch.nn.Module:
    """Load :func:`random_module_parameters` into ``module`` and return it."""
    params = random_module_parameters(module, "module", seed, constant_scale)
    load_haiku_params(module, flat_parameters(params), prefix="module")
    return module


def as_torch(features: dict) -> dict:
    """numpy arrays -> torch tensors (same dtypes)."""
    return {key: torch.from_numpy(np.asarray(value)) for key, value in features.items()}


def real_features(config, first_column: int = 64, num_res: int = 30, seed: int = 0) -> dict:
    """Processed eval-mode features made by our data pipeline from real files in ``tests/data``.

    * query: columns ``[first_column, first_column + num_res)`` of the first globin of
      ``globins45.ali`` (MYG_ESCGI), its middle residue replaced by X (unknown);
    * MSA: the 45 globins cropped to the same columns (duplicates dropped by ``make_msa_features``);
      the default window holds real insertions (a deletion-matrix column) and gaps;
    * template: chain A of ``1A8O.cif`` (70 residues: real coordinates, unrelated sequence) on query
      residues ``1 .. min(num_res, 50) - 1`` but one, shifted by 20. Query residue 0 stays unaligned:
      AlphaFold's pre-omega torsion of an aligned residue 0 is rounding noise (its previous atoms are
      zero padding), an unaligned one is exactly zero (``alphafold_reference.random_features`` puts
      its N atom on an axis instead).

    ``config`` is our model config (``fastfold.config.model_config``); its ``data`` section sets the
    sizes (clusters, extra sequences, templates, recycling). Returns ``process_features``' dict with a
    leading dimension of one slice per recycling iteration, e.g. ``msa_feat`` [N_iter, N_clust, N_res, 49].
    """
    globins = read_stockholm(DATA / "globins45.ali")
    window = slice(first_column, first_column + num_res)
    sequences = [sequence[window] for sequence in globins.sequences]
    middle = num_res // 2
    sequences[0] = sequences[0][:middle] + "X" + sequences[0][middle + 1:]
    msa = Msa(tuple(sequences), globins.deletion_matrix[:, window].copy(), globins.descriptions)
    chain = read_mmcif(DATA / "1A8O.cif").chains["A"]
    mapping = {query: query + 20 for query in range(1, min(num_res, len(chain.seqres) - 20))
               if query != num_res // 3}
    template = template_features_from_chain(chain, mapping, num_res, "1a8o_A")
    template["template_sum_probs"] = np.array([30.0], np.float32)
    raw = {**make_sequence_features(sequences[0], "globin"), **make_msa_features([msa]),
           **stack_template_features([template], num_res)}
    return process_features(raw, config, "eval", seed)
