"""The full-depth monomer network against AlphaFold's JAX model: model_1_ptm at official widths.

48 Evoformer blocks (C_m 256, C_z 128), 4 extra-MSA blocks, the template stack (2 blocks) with
torsion-angle rows, 8 structure-module iterations and every head, on real features of 16 residues
(:func:`model_inputs.real_features`: a globin window with an unknown residue, 6 MSA clusters,
8 extra sequences, one real template beside a padding one), one iteration (the recycling loop is
tested by ``test_alphafold_end_to_end``). AlphaFold is compiled with few optimisations and the
parameters are loaded without an npz round trip, to keep the test to about a minute of CPU.

Random parameters keep their fan-in spread; zero-initialised output layers get 0.1 x a standard normal
(``random_parameters``), so every block adds an update of the order of its layer-normed input:
activations grow to about 100 over 48 blocks and stay far from float32's range.

Bounds from float32 accumulation. Both codes compute in float32 with different summation orders; a
K-term dot product (K <= 4 C_m = 1024 here) differs by about sqrt(K) 2^-24 ~ 2e-6 of its size. The
residual stream passes about 48 x 11 ~ 600 such operations; LayerNorm before every module keeps their
errors from multiplying (the random updates are not chaotic at this scale), so the errors add, as a
random walk (sqrt(600) x 2e-6 ~ 5e-5 of the stream's size) and at worst coherently (1e-3). The bound
on representations and logits is 1e-4 of the largest reference value, twice the random-walk estimate;
measured errors are near 1e-6. Atom positions (tens of A) and the confidences keep issue 4's absolute
bounds: 1e-3 A and 1e-3 for pLDDT (0-100), PAE (A) and pTM.
"""

import numpy as np
import torch
from alphafold_reference import (
    deepmind_monomer_config,
    final_output_errors,
    relative_output_errors,
    run_alphafold,
)
from model_inputs import as_torch, flat_parameters, random_module_parameters, real_features

from fastfold.config import model_config
from fastfold.model.alphafold import PARAMETER_PREFIX, AlphaFold
from fastfold.model.params import load_haiku_params

NUM_RES = 16


def test_full_depth_matches_alphafold():
    """Atoms, pLDDT, PAE, pTM within 1e-3; representations and logits within 1e-4 of their largest
    value (see the module docstring). One test, so that the models run once under pytest-xdist."""
    config = deepmind_monomer_config("model_1_ptm").model
    config.num_recycle = 0
    assert config.embeddings_and_evoformer.evoformer_num_block == 48
    pipeline_config = model_config("model_1_ptm")
    pipeline_config.data.eval.max_msa_clusters = 8  # 6 clusters: model_1 reserves max_templates rows
    pipeline_config.data.eval.max_templates = 2
    pipeline_config.data.common.max_extra_msa = 8
    pipeline_config.data.common.num_recycle = 0
    features = real_features(pipeline_config, num_res=NUM_RES)

    torch.manual_seed(0)
    model = AlphaFold(config).eval()
    params = random_module_parameters(model.alphafold_iteration, PARAMETER_PREFIX, seed=5)
    load_haiku_params(model.alphafold_iteration, flat_parameters(params), prefix=PARAMETER_PREFIX)
    expected = run_alphafold(config, params, features, num_iterations=1)
    with torch.no_grad():
        actual = model(as_torch(features), return_representations=True)

    positions = expected["structure_module"]["final_atom_positions"]
    assert 10.0 < np.abs(positions).max() < 100.0
    errors = final_output_errors(actual, expected)
    print("max abs errors:", {key: f"{value:.2e}" for key, value in errors.items()})
    assert all(error <= 1e-3 for error in errors.values()), errors

    relative = relative_output_errors(actual, expected, max_scale=1e4)
    print("max abs errors / max abs:", {key: f"{value:.1e}" for key, value in relative.items()})
    assert max(relative.values()) <= 1e-4, relative
