"""AlphaFold's configuration tree, presets, and YAML experiment files with command-line overrides.

``model_config("model_1_ptm")`` gives the tree under AlphaFold's own key names;
``load_experiment("configs/demo.yaml", ["model.num_recycle=1"])`` merges an experiment file and
dotted overrides onto its preset, checking every key and type.
"""

from fastfold.config.loader import ConfigError, dump_yaml, load_experiment, model_config, preset_names

__all__ = ["ConfigError", "dump_yaml", "load_experiment", "model_config", "preset_names"]
