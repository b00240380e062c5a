"""Losses against NumPy references written from the textbook definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from orca_jax.train import losses

V = 11


def np_log_softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def np_kl(p, q):
    """KL(p||q) for probability vectors, 0 log 0 = 0 (float64)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return t.sum(-1)


def np_divergence(p_teacher, q_student, kind, beta):
    if kind == "forward_kl":
        return np_kl(p_teacher, q_student)
    if kind == "reverse_kl":
        return np_kl(q_student, p_teacher)
    m = beta * p_teacher + (1 - beta) * q_student
    return beta * np_kl(p_teacher, m) + (1 - beta) * np_kl(q_student, m)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    student = rng.normal(size=(2, 5, V)).astype(np.float32) * 2
    teacher = rng.normal(size=(2, 5, V)).astype(np.float32) * 2
    targets = rng.integers(0, V, size=(2, 5))
    weights = (rng.random((2, 5)) > 0.3).astype(np.float32)
    return student, teacher, targets, weights


def test_cross_entropy_and_z_loss_match_numpy(data):
    student, _, targets, weights = data
    logp = np_log_softmax(student.astype(np.float64))
    nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    np.testing.assert_allclose((losses.token_cross_entropy(student, targets) * weights).sum(), (nll * weights).sum(),
                               rtol=1e-6)
    lse = np.log(np.exp(student.astype(np.float64)).sum(-1))
    np.testing.assert_allclose(losses.z_loss_sum(student, weights), (lse ** 2 * weights).sum(), rtol=1e-6)


@pytest.mark.parametrize("kind", losses.KD_KINDS)
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_dense_kd_matches_numpy(data, kind, tau):
    student, teacher, _, weights = data
    q = np.exp(np_log_softmax(student.astype(np.float64) / tau))
    p = np.exp(np_log_softmax(teacher.astype(np.float64) / tau))
    want = tau ** 2 * (np_divergence(p, q, kind, 0.3) * weights).sum()
    got = losses.kd_dense_sum(student, teacher, weights, kind=kind, temperature=tau, beta=0.3)
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("kind", losses.KD_KINDS)
@pytest.mark.parametrize("mode", losses.MISSING_MASS)
@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_topk_kd_matches_numpy(data, kind, mode, tau):
    student, teacher, _, weights = data
    k = 4
    t_logp = np_log_softmax(teacher.astype(np.float64))
    ids = np.argsort(-t_logp, axis=-1)[..., :k]
    t_top = np.take_along_axis(t_logp, ids, -1)
    s_logp = np_log_softmax(student.astype(np.float64) / tau)
    s_top = np.take_along_axis(s_logp, ids, -1)
    if mode == "renormalize":
        p = np.exp(np_log_softmax(t_top / tau))
        q = np.exp(s_top - np.log(np.exp(s_top).sum(-1, keepdims=True)))
    else:
        t_tail = 1 - np.exp(t_top).sum(-1, keepdims=True)
        p = np.exp(np_log_softmax(np.concatenate([t_top, np.log(t_tail)], -1) / tau))
        q_top = np.exp(s_top)
        q = np.concatenate([q_top, 1 - q_top.sum(-1, keepdims=True)], -1)
    want = tau ** 2 * (np_divergence(p, q, kind, 0.5) * weights).sum()
    got = losses.kd_topk_sum(student, ids, t_top.astype(np.float32), weights, kind=kind,
                             temperature=tau, beta=0.5, missing_mass=mode)
    np.testing.assert_allclose(got, want, rtol=2e-5)


@pytest.mark.parametrize("kind", losses.KD_KINDS)
@pytest.mark.parametrize("mode", losses.MISSING_MASS)
def test_topk_with_full_vocabulary_equals_dense(data, kind, mode):
    student, teacher, _, weights = data
    t_logp = jax.nn.log_softmax(teacher)
    ids = jnp.argsort(-t_logp, axis=-1)  # all V ids, in teacher order
    top = jnp.take_along_axis(t_logp, ids, -1)
    dense = losses.kd_dense_sum(student, teacher, weights, kind=kind, temperature=2.0)
    topk = losses.kd_topk_sum(student, ids, top, weights, kind=kind, temperature=2.0, missing_mass=mode)
    np.testing.assert_allclose(topk, dense, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", losses.KD_KINDS)
def test_teacher_equal_to_student_gives_zero_loss_and_gradient(data, kind):
    student, _, _, weights = data

    def dense(s):
        return losses.kd_dense_sum(s, s, weights, kind=kind, temperature=1.5)

    def topk(s):
        logp = jax.nn.log_softmax(s)
        ids = jnp.argsort(-logp, axis=-1)[..., :5]
        return losses.kd_topk_sum(s, ids, jnp.take_along_axis(logp, ids, -1), weights, kind=kind,
                                  missing_mass="tail")

    for fn in (dense, topk):
        value, grad = jax.value_and_grad(fn)(jnp.asarray(student))
        assert abs(float(value)) < 1e-5
        assert float(jnp.max(jnp.abs(grad))) < 1e-5
        # and a different teacher does move the student: the check above is not vacuous
    other = jax.grad(lambda s: losses.kd_dense_sum(s, s[::-1], weights, kind=kind))(jnp.asarray(student))
    assert float(jnp.max(jnp.abs(other))) > 1e-3
