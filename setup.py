"""Install FastFold: ``pip install -e .[test]``.

Exact versions verified together on Python 3.11 (CPU) live in ``requirements/constraints.txt``;
the ranges below also admit the GPU machines' torch 2.11 + Triton 3.6.
Install ``torch==2.13.0`` (CPU) first: a torch range it does not satisfy pulls the CUDA build.
"""

from setuptools import find_packages, setup

setup(
    name="fastfold",
    version="0.1.0",
    description="AlphaFold2 in PyTorch: exact, fast, and parallel over GPUs",
    python_requires=">=3.11",
    packages=find_packages(include=["fastfold", "fastfold.*"]),
    package_data={"fastfold": ["config/*.yaml"]},
    install_requires=[
        "torch>=2.11",
        "numpy>=2.0",
        "scipy>=1.13",
        "biopython>=1.85",
        "ml-collections>=1.0",
        "dm-tree>=0.1.8",
        "pyyaml>=6.0",
        "tqdm>=4.66",
        "matplotlib>=3.9",
        "pytorch-lightning>=2.5",
    ],
    extras_require={
        # Triton JIT kernels (GPU) and TRITON_INTERPRET=1 (CPU tests); numpy is the interpreter's need.
        "kernels": ["triton>=3.6"],
        "test": [
            "triton>=3.6",
            "pytest>=8.0",
            "pytest-xdist>=3.6",
            "ruff>=0.6",
            # AlphaFold's JAX reference on CPU. alphafold-colabfold itself declares no TensorFlow.
            "jax>=0.9,<0.10",
            "jaxlib>=0.9,<0.10",
            "dm-haiku>=0.0.13",
            "alphafold-colabfold==2.3.11",
        ],
    },
)
