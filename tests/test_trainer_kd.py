"""Distillation inside the train step: online teacher, offline top-k, vocabulary check."""

import jax
import numpy as np
import pytest

import trainer_support as ts
from orca_jax import partitioning
from orca_jax.errors import UserError
from orca_jax.model import loading
from orca_jax.model.config import get_preset
from orca_jax.train import curriculum
from orca_jax.train.trainer import LossConfig


def test_online_teacher_equal_to_student_adds_no_loss_and_no_gradient():
    mesh = partitioning.make_mesh((1, 1, 1), jax.devices()[:1])
    [plain], _ = ts.one_step(mesh, 1, loss_cfg=LossConfig())
    [kd], _ = ts.one_step(mesh, 1, loss_cfg=LossConfig(kd_source="online", kd_kind="jsd", kd_alpha=0.25,
                                                       kd_temperature=2.0), self_teacher=True)
    assert abs(kd["loss/kd"]) < 1e-6
    np.testing.assert_allclose(kd["loss/ce"], plain["loss/ce"], rtol=1e-6)
    np.testing.assert_allclose(kd["loss"], 0.75 * plain["loss"], rtol=1e-5)
    # the KD term contributes no gradient: only the (1 - alpha)-scaled CE gradient remains
    np.testing.assert_allclose(kd["grad_norm"], 0.75 * plain["grad_norm"], rtol=1e-5)


def test_offline_topk_distillation_trains_from_the_batch(tmp_path):
    ts.parse_tiny_gin(tmp_path, "toy_loader.topk = 4\n")
    summary = curriculum.train(model_dir=str(tmp_path / "run"), train_steps=3,
                               loss=LossConfig(kd_source="offline", kd_kind="reverse_kl", kd_missing_mass="tail"))
    assert np.isfinite(summary["final_loss"])
    assert summary["final_step"] == 3


def test_teacher_with_another_vocabulary_fails_at_start(tmp_path, monkeypatch):
    ts.parse_tiny_gin(tmp_path)

    def fake_load(path, dtype=None):
        return loading.LoadedModel(config=get_preset("tiny"), params={}, tokenizer=None, source="orbax", path=path)
    monkeypatch.setattr(loading, "load_model", fake_load)
    with pytest.raises(UserError, match="vocabulary 512, the student 256"):
        curriculum.train(model_dir=str(tmp_path / "run"), loss=LossConfig(kd_source="online"),
                         teacher_path=str(tmp_path))
