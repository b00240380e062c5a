"""orca-jax: Orca-style explanation tuning of small decoders in JAX."""

__version__ = "0.1.0"

from orca_jax import quiet_tensorflow

quiet_tensorflow.install()  # before anything imports TensorFlow (seqio does)
