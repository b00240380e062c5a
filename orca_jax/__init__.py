"""orca-jax: Orca-style explanation tuning of small decoders in JAX."""

__version__ = "0.1.0"
