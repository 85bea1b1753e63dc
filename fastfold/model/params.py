"""DeepMind's published parameter layout (``params_model_*.npz``) in and out of our modules.

Our module tree mirrors AlphaFold's haiku tree: a child module's attribute name is the haiku module
name and a parameter's name is the haiku parameter name, so the flat key of a parameter follows
from its PyTorch name. Two rules cover the rest:

* an ``nn.ModuleList`` holds the layers of a haiku ``layer_stack``: its index selects the leading
  axis of the stacked array (``evoformer.evoformer_iteration.3.msa_transition.transition1.weights``
  is row 3 of ``evoformer/evoformer_iteration/msa_transition/transition1//weights``);
* attribute names that haiku spells differently are listed once in :data:`HAIKU_MODULE_NAMES`;
* a module whose ``haiku_name_scope`` attribute is ``False`` adds no level to the haiku path: its
  children's parameters sit directly in its parent's scope. PyTorch groups layers (the input
  embedder, the recycling embedder, a stack's driver) that haiku creates inline in one module.
"""

import io
import os
import zipfile
from collections import defaultdict

import numpy as np
import torch
from torch import nn

from fastfold.common.io import write_atomically

# PyTorch attribute name -> haiku module name, where the two differ.
HAIKU_MODULE_NAMES = {"layer_stack": "__layer_stack_no_state"}


class ParameterFileError(ValueError):
    """A parameter file that does not fit the model (wrong model, missing key, wrong shape)."""


def haiku_key(torch_name: str, prefix: str = "") -> tuple:
    """Map a PyTorch parameter name to (flat haiku key, stack indices).

    ``"evoformer.evoformer_iteration.3.outer_product_mean.output_w"`` with prefix
    ``"alphafold/alphafold_iteration"`` -> (``"alphafold/alphafold_iteration/evoformer/
    evoformer_iteration/outer_product_mean//output_w"``, ``(3,)``).
    """
    *module_path, param_name = torch_name.split(".")
    names, indices = [], []
    for part in module_path:
        if part.isdigit():
            indices.append(int(part))
        else:
            names.append(HAIKU_MODULE_NAMES.get(part, part))
    module = "/".join(([prefix] if prefix else []) + names)
    return f"{module}//{param_name}", tuple(indices)


def _without_unscoped_modules(module: nn.Module, torch_name: str) -> str:
    """Drop from ``torch_name`` the attribute names of submodules with ``haiku_name_scope = False``."""
    parts, kept, current = torch_name.split("."), [], module
    for part in parts[:-1]:
        current = current.get_submodule(part)
        if getattr(current, "haiku_name_scope", True):
            kept.append(part)
    return ".".join(kept + parts[-1:])


def _parameters_by_key(module: nn.Module, prefix: str) -> dict:
    """Group a module's parameters by haiku key: key -> list of (stack indices, parameter)."""
    grouped = defaultdict(list)
    for name, param in module.named_parameters():
        key, indices = haiku_key(_without_unscoped_modules(module, name), prefix)
        grouped[key].append((indices, param))
    return grouped


def _stacked_shape(entries: list) -> tuple:
    """Shape of the haiku array holding ``entries`` (leading stack axes, then the parameter's)."""
    indices = [i for i, _ in entries]
    stack_shape = tuple(max(ix[d] for ix in indices) + 1 for d in range(len(indices[0])))
    return stack_shape + tuple(entries[0][1].shape)


def load_haiku_params(module: nn.Module, flat: dict, prefix: str = "", source: str = "<parameters>",
                      strict: bool = True) -> None:
    """Copy parameters in DeepMind's flat layout into ``module``.

    Parameters
    ----------
    flat : dict
        ``{"{module path}//{name}": array}``, e.g. the contents of ``params_model_1_ptm.npz``.
    prefix : str
        Haiku path of ``module`` inside the file (``"alphafold/alphafold_iteration"`` for the model).
    source : str
        Name of the file, for error messages.
    strict : bool
        Also fail on keys under ``prefix`` that the module does not use (a file of another model).

    Raises
    ------
    ParameterFileError
        Naming ``source`` and the first offending key: missing, of the wrong shape, or unused. The
        file is checked in full before anything is copied, so ``module`` is unchanged on error.
    """
    grouped = _parameters_by_key(module, prefix)
    scope = f"{prefix}/" if prefix else ""
    unused = sorted(k for k in flat if k.startswith(scope) and k not in grouped) if strict else []
    other_model = "is the file for another model (e.g. a _ptm or multimer model)?"
    for key in sorted(grouped):
        expected = _stacked_shape(grouped[key])
        if key not in flat:
            hint = f"; the file has {len(unused)} parameters this model does not use: {other_model}"
            hint = hint if unused else ""
            raise ParameterFileError(f"{source}: missing parameter {key!r} (shape {expected}){hint}")
        if np.shape(flat[key]) != expected:
            raise ParameterFileError(
                f"{source}: parameter {key!r} has shape {np.shape(flat[key])}, the model expects {expected}")
    if unused:
        raise ParameterFileError(
            f"{source}: parameter {unused[0]!r} (and {len(unused) - 1} more) is not part of this model; "
            + other_model)
    with torch.no_grad():
        for key, entries in grouped.items():
            array = np.asarray(flat[key])
            for indices, param in entries:
                param.copy_(torch.from_numpy(np.ascontiguousarray(array[indices])).to(param.dtype))


def haiku_params(module: nn.Module, prefix: str = "") -> dict:
    """``module``'s parameters in DeepMind's flat layout: ``{key: float32 numpy array}``."""
    flat = {}
    for key, entries in _parameters_by_key(module, prefix).items():
        array = np.zeros(_stacked_shape(entries), np.float32)
        for indices, param in entries:
            array[indices] = param.detach().float().cpu().numpy()
        flat[key] = array
    return flat


def read_npz(path) -> dict:
    """Read a parameter file; a missing, truncated or non-npz file gives a clear error."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise ParameterFileError(f"{path}: parameter file not found") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise ParameterFileError(f"{path}: not a readable .npz parameter file ({error})") from None


def write_npz(path, flat: dict) -> None:
    """Write ``flat`` as an uncompressed npz, atomically (temporary file, then rename)."""
    buffer = io.BytesIO()
    np.savez(buffer, **flat)
    write_atomically(path, buffer.getvalue())
