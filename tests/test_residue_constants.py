"""``fastfold.common.residue_constants`` against AlphaFold's own ``residue_constants``, value by value."""

import copy
import types

import numpy as np
import pytest
from alphafold.common import residue_constants as alphafold_constants
from alphafold.model import all_atom, all_atom_multimer

from fastfold.common import residue_constants

# Module-level loop variables that AlphaFold's module leaves behind: not constants.
ALPHAFOLD_LOOP_VARIABLES = {
    "atom",
    "atom_i",
    "chi_angle_atoms_for_res",
    "chi_group",
    "chi_group_i",
    "res_name",
}
# AlphaFold's public names that we leave out on purpose.
NOT_PROVIDED = {
    "stereo_chemical_props_path": "the stereochemistry ships as fastfold/common/residue_geometry.py",
    "chi_angle_atom": "builder of the two one-hot tables below",
    "chi_atom_1_one_hot": "used nowhere in AlphaFold's model, losses or data pipeline",
    "chi_atom_2_one_hot": "used nowhere in AlphaFold's model, losses or data pipeline",
    "chi_groups_for_atom": "used nowhere in AlphaFold's model, losses or data pipeline",
}
# Compared by calling them, below.
FUNCTIONS = {
    "sequence_to_onehot",
    "atom_id_to_type",
    "load_stereo_chemical_props",
    "make_atom14_dists_bounds",
}
TYPES = {"Bond", "BondAngle"}


def _alphafold_public_names() -> set[str]:
    """Names AlphaFold's module defines for its users (no imports, no typing aliases)."""
    return {
        name
        for name, value in vars(alphafold_constants).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", None) != "typing"
    }


CONSTANT_NAMES = sorted(
    _alphafold_public_names() - ALPHAFOLD_LOOP_VARIABLES - set(NOT_PROVIDED) - FUNCTIONS - TYPES
)


def assert_same(ours, theirs, where: str) -> None:
    """Recursively assert equal structure and values: same container types and keys, same array dtype
    and shape, integers and strings exactly, floats within 1e-6."""
    if isinstance(theirs, np.ndarray):
        assert isinstance(ours, np.ndarray), where
        assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), where
        if np.issubdtype(theirs.dtype, np.floating):
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6, err_msg=where)
        else:
            np.testing.assert_array_equal(ours, theirs, err_msg=where)
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        assert ours.keys() == theirs.keys(), where
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(theirs, tuple) and hasattr(theirs, "_fields"):
        assert getattr(ours, "_fields", None) == theirs._fields, where
        _assert_same_items(ours, theirs, where)
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs), f"{where}: {type(ours)} != {type(theirs)}"
        _assert_same_items(ours, theirs, where)
    elif isinstance(theirs, float):
        assert isinstance(ours, float), where
        assert abs(ours - theirs) <= 1e-6, f"{where}: {ours} != {theirs}"
    else:
        assert type(ours) is type(theirs), f"{where}: {type(ours)} != {type(theirs)}"
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


def _assert_same_items(ours, theirs, where: str) -> None:
    assert len(ours) == len(theirs), where
    for index, (mine, reference) in enumerate(zip(ours, theirs, strict=True)):
        assert_same(mine, reference, f"{where}[{index}]")


def test_alphafold_names_are_all_accounted_for():
    assert len(CONSTANT_NAMES) > 40
    assert set(NOT_PROVIDED) <= _alphafold_public_names()
    assert FUNCTIONS | TYPES <= _alphafold_public_names()


@pytest.mark.parametrize("name", CONSTANT_NAMES)
def test_constant_matches_alphafold(name):
    assert hasattr(residue_constants, name), f"missing {name}"
    assert_same(getattr(residue_constants, name), getattr(alphafold_constants, name), name)


@pytest.mark.parametrize(
    "name, perturb",
    [
        ("rigid_group_atom_positions", lambda table: table["TRP"][7].__setitem__(2, (0.854, -1.148, -0.004))),
        ("chi_angles_atoms", lambda table: table["ILE"].reverse()),
        ("HHBLITS_AA_TO_ID", lambda table: table.pop("U")),
        (
            "restype_rigid_group_default_frame",
            lambda table: table.__setitem__((5, 6, 0, 3), table[5, 6, 0, 3] + 1e-5),
        ),
        ("chi_pi_periodic", lambda table: table[2].__setitem__(1, 1.0)),
    ],
)
def test_comparison_catches_a_changed_value(name, perturb):
    table = copy.deepcopy(getattr(residue_constants, name))
    assert_same(table, getattr(alphafold_constants, name), name)
    perturb(table)
    with pytest.raises(AssertionError):
        assert_same(table, getattr(alphafold_constants, name), name)


def test_named_tuples_have_alphafold_fields():
    assert residue_constants.Bond._fields == alphafold_constants.Bond._fields
    assert residue_constants.BondAngle._fields == alphafold_constants.BondAngle._fields


def test_stereo_chemical_props_match_alphafold():
    assert_same(
        residue_constants.load_stereo_chemical_props(),
        alphafold_constants.load_stereo_chemical_props(),
        "load_stereo_chemical_props()",
    )


@pytest.mark.parametrize("arguments", [{}, {"overlap_tolerance": 0.25, "bond_length_tolerance_factor": 3.0}])
def test_atom14_distance_bounds_match_alphafold(arguments):
    assert_same(
        residue_constants.make_atom14_dists_bounds(**arguments),
        alphafold_constants.make_atom14_dists_bounds(**arguments),
        f"make_atom14_dists_bounds({arguments})",
    )


@pytest.mark.parametrize(
    "sequence, mapping_name, map_unknown_to_x",
    [
        ("ARNDCQEGHILKMFPSTWYV", "restype_order", False),
        ("MKVBZUXJO", "restype_order_with_x", True),
        ("AC-DXBZUO", "HHBLITS_AA_TO_ID", False),
        ("", "restype_order_with_x", False),
    ],
)
def test_sequence_to_onehot_matches_alphafold(sequence, mapping_name, map_unknown_to_x):
    mapping = getattr(residue_constants, mapping_name)
    ours = residue_constants.sequence_to_onehot(sequence, mapping, map_unknown_to_x)
    theirs = alphafold_constants.sequence_to_onehot(sequence, mapping, map_unknown_to_x)
    assert_same(ours, theirs, "sequence_to_onehot")


@pytest.mark.parametrize(
    "sequence, mapping, map_unknown_to_x",
    [
        ("MKa", residue_constants.restype_order_with_x, True),  # lower case
        ("MKB", residue_constants.restype_order, False),  # not in the mapping
        ("MK", {"M": 0, "K": 2}, False),  # gap in the class indices
    ],
)
def test_sequence_to_onehot_rejects_what_it_cannot_encode(sequence, mapping, map_unknown_to_x):
    with pytest.raises(ValueError):
        residue_constants.sequence_to_onehot(sequence, mapping, map_unknown_to_x)


def test_atom_id_to_type_matches_alphafold():
    for atom_id in residue_constants.atom_types + ["H", "HB2"]:
        assert residue_constants.atom_id_to_type(atom_id) == alphafold_constants.atom_id_to_type(atom_id)
    with pytest.raises(ValueError):
        residue_constants.atom_id_to_type("XE")


# Tables that AlphaFold builds in its model code, compared with the model code's own.
MODEL_TABLES = {
    "restype_atom14_to_atom37": all_atom_multimer.RESTYPE_ATOM14_TO_ATOM37,
    "restype_atom37_to_atom14": all_atom_multimer.RESTYPE_ATOM37_TO_ATOM14,
    "restype_atom14_mask": all_atom_multimer.RESTYPE_ATOM14_MASK,
    "restype_atom37_mask": all_atom_multimer.RESTYPE_ATOM37_MASK,
    "restype_atom14_is_ambiguous": all_atom_multimer.RESTYPE_ATOM14_IS_AMBIGUOUS,
    "restype_atom14_renaming_matrices": all_atom.RENAMING_MATRICES,
    "restype_rigidgroup_base_atom37_idx": all_atom_multimer.RESTYPE_RIGIDGROUP_BASE_ATOM37_IDX,
    "restype_rigidgroup_mask": all_atom_multimer.RESTYPE_RIGIDGROUP_MASK,
}


@pytest.mark.parametrize("name", sorted(MODEL_TABLES))
def test_model_table_matches_alphafold(name):
    assert_same(getattr(residue_constants, name), MODEL_TABLES[name], name)


def test_swap_index_follows_alphafold_renaming():
    np.testing.assert_array_equal(
        residue_constants.restype_atom14_ambiguity_swap_index, all_atom.RENAMING_MATRICES.argmax(-1)
    )
    np.testing.assert_array_equal(
        residue_constants.chi_angles_atom_indices,
        all_atom_multimer.CHI_ATOM_INDICES[: residue_constants.restype_num],
    )
