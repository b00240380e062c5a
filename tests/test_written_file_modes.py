"""Files the commands write get the mode any file the process opens gets (0666 less the umask):
the converted model's safetensors file too, which safetensors >= 0.8 creates 0600."""

import dataclasses
import os
import stat

import jax
import pytest

from orca_jax.model.config import get_preset
from orca_jax.model.decoder import init_params
from orca_jax.model.hf_convert import save_hf_folder


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_safetensors_file_has_the_umask_mode_like_its_config(tmp_path, umask):
    config = dataclasses.replace(get_preset("tiny"), num_layers=1, vocab_size=64)
    params = init_params(config, jax.random.key(0))
    previous = os.umask(umask)
    try:
        save_hf_folder(tmp_path / "hf", config, params)
    finally:
        os.umask(previous)
    modes = {name: stat.S_IMODE(os.stat(tmp_path / "hf" / name).st_mode) for name in ("config.json", "model.safetensors")}
    assert modes == {"config.json": 0o666 & ~umask, "model.safetensors": 0o666 & ~umask}
