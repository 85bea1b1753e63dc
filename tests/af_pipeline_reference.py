"""AlphaFold's own feature processing as the test reference, run in a subprocess.

``alphafold-colabfold`` 2.3.20 runs DeepMind's TensorFlow data transforms on a NumPy stand-in that
reproduces TensorFlow's random streams; its model code differs from the 2.3.11 that the venv imports,
so it is installed once with ``pip install --no-deps --target .venv/af2320`` and imported only in a
child process with that folder first on ``PYTHONPATH``.

The child also records every random draw of the pipeline (shuffles, uniform numbers, categorical
samples) in order, so a test can replay AlphaFold's random choices through our pipeline.

Run as a script, this file is the child: ``python af_pipeline_reference.py IN.pkl OUT.pkl``.
"""

import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

AF_PIPELINE_VERSION = "2.3.20"
AF_PIPELINE_DIR = Path(__file__).resolve().parents[1] / ".venv" / "af2320"


def install_af_pipeline() -> Path:
    """Install alphafold-colabfold 2.3.20 (no dependencies) into ``.venv/af2320`` once; return the folder."""
    marker = AF_PIPELINE_DIR / f"alphafold_colabfold-{AF_PIPELINE_VERSION}.dist-info"
    if not marker.is_dir():
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target"]
        command += [str(AF_PIPELINE_DIR), f"alphafold-colabfold=={AF_PIPELINE_VERSION}"]
        subprocess.run(command, check=True)
    return AF_PIPELINE_DIR


def run_af_pipeline(np_example: dict, model_name: str, overrides: dict, seed: int = 0) -> tuple[dict, list]:
    """AlphaFold's ``np_example_to_features`` on raw features, and its random draws in order.

    Parameters
    ----------
    np_example
        Raw features (sequence, MSA, template dicts merged).
    model_name
        AlphaFold preset, e.g. ``"model_1"``.
    overrides
        Dotted config keys (``"data.eval.max_msa_clusters"``) -> values, applied to AlphaFold's config.
    seed
        AlphaFold's random seed.

    Returns
    -------
    tuple
        The processed features, and a list of ``(op, shape, output)`` for every random op called, with
        ``op`` one of ``"shuffle"``, ``"uniform"``, ``"categorical"``.
    """
    folder = install_af_pipeline()
    with tempfile.TemporaryDirectory() as tmp:
        request, reply = Path(tmp) / "in.pkl", Path(tmp) / "out.pkl"
        request.write_bytes(pickle.dumps((np_example, model_name, overrides, seed)))
        env = dict(os.environ, PYTHONPATH=str(folder), JAX_PLATFORMS="cpu")
        subprocess.run([sys.executable, __file__, str(request), str(reply)], check=True, env=env)
        return pickle.loads(reply.read_bytes())


class ReplayRandomChoices:
    """Our pipeline's :class:`~fastfold.data.random_choices.RandomChoices`, answered by AlphaFold's draws.

    Parameters
    ----------
    calls
        ``(op, output)`` pairs recorded by :func:`run_af_pipeline`, in the order our pipeline asks for them.
    """

    def __init__(self, calls: list):
        self.calls = list(calls)

    def _next(self, op: str, shape: tuple[int, ...]):
        recorded_op, output = self.calls.pop(0)
        output = np.asarray(output)
        if recorded_op != op or output.size != int(np.prod(shape)):
            raise AssertionError(f"Asked for {op} {shape}, AlphaFold drew {recorded_op} {output.shape}")
        return output.reshape(shape)

    def permutation(self, n: int) -> np.ndarray:
        values = self._next("shuffle", (n,))
        return values - values.min() if n else values

    def uniform(self, shape: tuple[int, ...]) -> np.ndarray:
        return self._next("uniform", shape)

    def integers(self, low: int, high: int, shape: tuple[int, ...]) -> np.ndarray:
        return self._next("uniform", shape)

    def categorical(self, probs: np.ndarray) -> np.ndarray:
        return self._next("categorical", probs.shape[:-1])


def replay_eval_draws(calls: list, num_members: int) -> ReplayRandomChoices:
    """AlphaFold's eval-mode draws in the order of ours.

    AlphaFold first draws two unused uniform numbers (MSA replacement with X at rate 0), then the crop
    seed; with more than one ensemble member it runs the ensembled steps once to learn their output
    shapes and throws that draw away before mapping over the members.
    """
    per_chain, ensembled = calls[2:3], calls[3:]
    if num_members > 1:
        ensembled = ensembled[len(ensembled) // (num_members + 1) :]
    return ReplayRandomChoices(per_chain + ensembled)


def _child(request: str, reply: str) -> None:
    """Run AlphaFold's pipeline with recording random ops (in the subprocess)."""
    from alphafold.model import config, features
    from alphafold.model.tf import np_backend

    np_example, model_name, overrides, seed = pickle.loads(Path(request).read_bytes())
    cfg = config.model_config(model_name)
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = cfg
        for parent in parents:
            node = node[parent]
        node[leaf] = value

    calls = []

    def recording(op, function):
        def wrapped(*args, **kwargs):
            output = function(*args, **kwargs)
            calls.append((op, output))
            return output

        return wrapped

    np_backend.random_shuffle = recording("shuffle", np_backend.random_shuffle)
    np_backend.random.uniform = recording("uniform", np_backend.random.uniform)
    np_backend.random.categorical = recording("categorical", np_backend.random.categorical)
    processed = features.np_example_to_features(np_example, cfg, random_seed=seed)
    Path(reply).write_bytes(pickle.dumps((processed, calls)))


if __name__ == "__main__":
    _child(*sys.argv[1:])
