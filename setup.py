from setuptools import find_packages, setup

setup(
    name="orca-jax",
    version="0.1.0",
    description="Orca-style explanation tuning of small decoders in JAX",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # gin/ (the run files) installs inside the package as orca_jax/gin_files, where
    # `--gin_file=runs/tiny.gin` finds it (orca_jax/train/gin_setup.py).
    packages=find_packages(include=["orca_jax", "orca_jax.*", "tasks", "tasks.*"]) + ["orca_jax.gin_files"],
    package_dir={"orca_jax.gin_files": "gin"},
    package_data={"orca_jax.gin_files": ["*/*.gin"]},
    include_package_data=True,
    install_requires=[
        "jax>=0.6",
        "flax>=0.10",
        "optax",
        "orbax-checkpoint",
        "gin-config",
        "tokenizers",
        "safetensors",
        "gguf",
        "numpy",
        "jinja2",
        "pyarrow",
        "tqdm",
        # Teacher client and `orca-jax serve` (async HTTP both ways).
        "aiohttp",
        "tensorboardX",
        "matplotlib",
    ],
    extras_require={
        # Data preparation through seqio Tasks (pulls TensorFlow); training reads the
        # prepared cache without it.
        "seqio": ["seqio"],
        # `orca-jax eval --harness`: lm-evaluation-harness tasks on orca-jax models
        # (orca_jax/evaluation/harness.py); its HF backend, for the parity test, needs torch.
        "harness": ["lm-eval[api]>=0.4.13"],  # api: its clients for `orca-jax serve` (local-completions)
        # t5x interop (orca_jax/t5x): t5x's registry dependencies. t5x, airio and jestimator come
        # from their repositories with --no-deps (README, "t5x interop").
        "t5x": ["seqio", "fiddle", "chex", "jaxtyping", "tensorboard", "grain", "clu", "cached-property"],
        "dev": [
            "seqio",
            # Reference implementations for parity tests only; torch pinned to the
            # CPU build (an unpinned torch pulls a multi-GB CUDA build).
            "torch==2.13.0",
            "transformers",
            "accelerate",
            "pytest",
            "hypothesis",
            # lm-evaluation-harness, so the `eval --harness` tests run in CI (the harness extra).
            "lm-eval[api]>=0.4.13",
            # The official client, to check that `orca-jax serve` speaks the OpenAI API.
            "openai",
            # Execute the notebooks headless in tests.
            "nbformat",
            "nbclient",
            "ipykernel",
        ],
    },
    entry_points={"console_scripts": ["orca-jax=orca_jax.cli:main"]},
)
