"""Build configs: base tree + preset + YAML experiment file + dotted command-line overrides.

Every change is checked against the tree it lands on: an unknown key or a value of the wrong type
raises :class:`ConfigError` naming the source (file or command line), the dotted key and the
expected type. Nothing outside the tree can be added, so a typo never passes silently.
"""

import copy
import functools
import os
from importlib import resources

import ml_collections
import yaml

# Preset name suffix -> extra changes; "_ptm" models add the predicted aligned error head.
_VARIANTS = {"": {}, "_ptm": {"model.heads.predicted_aligned_error.weight": 0.1}}


class ConfigError(ValueError):
    """A user's configuration mistake: bad YAML, unknown key, wrong type, unknown preset."""


@functools.cache
def _read_packaged_yaml(name: str):
    text = resources.files("fastfold.config").joinpath(name).read_text()
    return yaml.safe_load(text)


def _preset_changes() -> dict:
    """``{preset name: {dotted key: value}}`` for model_1..5 and their _ptm variants."""
    presets = {}
    for base_name, changes in _read_packaged_yaml("presets.yaml").items():
        for suffix, extra in _VARIANTS.items():
            presets[base_name + suffix] = {**(changes or {}), **extra}
    return presets


def preset_names() -> list:
    """Names accepted by :func:`model_config` (``model_1`` .. ``model_5_ptm``)."""
    return sorted(_preset_changes())


def _type_name(value) -> str:
    return "list" if isinstance(value, (list, tuple)) else type(value).__name__


def _checked_value(current, value, key: str, source: str):
    """``value`` converted to the type of ``current``, or ConfigError if it does not fit."""
    if current is None:
        return value
    if isinstance(current, bool) or isinstance(value, bool):
        if isinstance(current, bool) and isinstance(value, bool):
            return value
    elif isinstance(current, float) and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(current, int) and isinstance(value, int):
        return value
    elif isinstance(current, str) and isinstance(value, str):
        return value
    elif isinstance(current, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(current)(value)
    raise ConfigError(
        f"{source}: key '{key}' expects {_type_name(current)}, got {_type_name(value)} ({value!r})")


def _set(config: ml_collections.ConfigDict, key: str, value, source: str) -> None:
    """Set dotted ``key`` in ``config`` after checking that it exists and that ``value`` fits."""
    node = config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            is_section = isinstance(node, ml_collections.ConfigDict)
            known = ", ".join(sorted(node.keys())) if is_section else "none"
            where = ".".join(parts[:depth]) or "the top level"
            raise ConfigError(
                f"{source}: unknown key '{key}' ('{part}' is not under {where}; known: {known})")
        if depth < len(parts) - 1:
            node = node[part]
    current = node[parts[-1]]
    if isinstance(current, ml_collections.ConfigDict):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}' is a section, got {_type_name(value)} ({value!r})")
        for child, child_value in value.items():
            _set(config, f"{key}.{child}", child_value, source)
        return
    with node.unlocked():
        node[parts[-1]] = _checked_value(current, value, key, source)


def _flatten(tree: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are leaves."""
    flat = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def model_config(name: str) -> ml_collections.ConfigDict:
    """AlphaFold's config tree for preset ``name`` (``model_1`` .. ``model_5``, ``*_ptm``), locked."""
    presets = _preset_changes()
    if name not in presets:
        raise ConfigError(f"unknown preset '{name}'; known presets: {', '.join(sorted(presets))}")
    config = ml_collections.ConfigDict(copy.deepcopy(_read_packaged_yaml("base.yaml")))
    for key, value in presets[name].items():
        _set(config, key, value, f"preset {name}")
    config.lock()
    return config


def _read_yaml_file(path: str) -> dict:
    try:
        with open(path) as stream:
            tree = yaml.safe_load(stream)
    except FileNotFoundError:
        raise ConfigError(f"{path}: experiment file not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, "
                          f"got {_type_name(tree)}")
    return tree


def _parse_override(text: str) -> tuple:
    key, separator, raw = text.partition("=")
    if not separator or not key:
        raise ConfigError(f"command line: override '{text}' is not of the form dotted.key=value")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise ConfigError(f"command line: value of '{key}' is not valid YAML: {error}") from None
    return key.strip(), value


def load_experiment(path=None, overrides=(), preset: str = "model_1_ptm") -> ml_collections.ConfigDict:
    """Merge an experiment YAML file and dotted overrides onto a preset.

    Parameters
    ----------
    path : str or None
        YAML file holding nested config keys; its optional top-level ``preset`` names the preset.
    overrides : sequence of str
        ``"model.embeddings_and_evoformer.evoformer_num_block=2"``; values parse as YAML scalars.
    preset : str
        Preset used when the file names none.
    """
    tree = _read_yaml_file(os.fspath(path)) if path is not None else {}
    preset = tree.pop("preset", preset)
    source = os.fspath(path) if path is not None else "command line"
    if not isinstance(preset, str):
        raise ConfigError(f"{source}: key 'preset' expects str, got {_type_name(preset)} ({preset!r})")
    try:
        config = model_config(preset)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    for key, value in _flatten(tree).items():
        _set(config, key, value, source)
    for text in overrides:
        key, value = _parse_override(text)
        _set(config, key, value, "command line")
    return config


def dump_yaml(config: ml_collections.ConfigDict) -> str:
    """The config as YAML that :func:`load_experiment` reads back to an equal tree."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None, width=100)
