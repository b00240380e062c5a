"""t5x's own trainer trains orca-jax's decoder on an orca-jax trace mixture read through seqio with
t5x's feature converter (the model's WeightedLMFeatureConverter): the loss on a fixed batch falls."""

import json

import numpy as np
import pytest

pytest.importorskip("t5x.trainer")

import jax  # noqa: E402
from t5x import partitioning, utils  # noqa: E402
from t5x import trainer as trainer_lib  # noqa: E402
from t5x.adafactor import Adafactor  # noqa: E402

from orca_jax.model.config import get_preset  # noqa: E402
from orca_jax.synthetic.tokenizer import train_tokenizer  # noqa: E402
from orca_jax.t5x.model import decoder_only_model, logical_axis_rules, logical_factor_rules  # noqa: E402

BATCH, LENGTH = 4, 128


def _traces():
    single = [{"id": f"s{i}", "system_prompt": "", "question": f"Add {i} and {i}.", "response": f"{i} plus {i} is {2 * i}."}
              for i in range(12)]
    multi = [{"conversations": [{"from": "human", "value": f"Count to {i}."},
                                {"from": "gpt", "value": " ".join(str(k) for k in range(1, i + 2))},
                                {"from": "human", "value": "Again?"}, {"from": "gpt", "value": "Yes, again."}]}
             for i in range(8)]
    return single, multi


@pytest.fixture()
def mixture(tmp_path):
    from tasks.t5x_features import register_t5x_trace_tasks
    from tasks.traces import register_trace_tasks

    single, multi = _traces()
    data = tmp_path / "data"
    data.mkdir()
    for name, records in (("sums", single), ("counts", multi)):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (data / "mixtures.json").write_text(json.dumps({"stage": {"traces_sums": 1, "traces_counts": 1}}))
    texts = [json.dumps(r) for r in single + multi]
    tokenizer_dir = str(tmp_path / "tokenizer")
    train_tokenizer(texts, vocab_size=300).save(tokenizer_dir)
    register_t5x_trace_tasks(register_trace_tasks(data_dir=str(data), tokenizer_path=tokenizer_dir))
    return tokenizer_dir


def test_t5x_trainer_lowers_the_loss_on_a_trace_mixture(mixture, tmp_path):
    config = get_preset("tiny").replace(vocab_size=320)
    model = decoder_only_model(config=config, tokenizer_path=mixture, optimizer_def=Adafactor(logical_factor_rules=logical_factor_rules()),
                               model_dir=str(tmp_path / "model"))
    dataset_cfg = utils.DatasetConfig(mixture_or_task_name="t5x_stage", task_feature_lengths={"targets": LENGTH},
                                      split="train", batch_size=BATCH, shuffle=True, seed=0, pack=True,
                                      use_cached=False)
    dataset = utils.get_dataset(dataset_cfg, shard_id=0, num_shards=1, feature_converter_cls=model.FEATURE_CONVERTER_CLS)
    batches = dataset.as_numpy_iterator()
    fixed = next(batches)
    assert fixed["decoder_loss_weights"].sum() > 0

    partitioner = partitioning.PjitPartitioner(num_partitions=1, logical_axis_rules=logical_axis_rules())
    initializer = utils.TrainStateInitializer(
        optimizer_def=model.optimizer_def, init_fn=model.get_initial_variables,
        input_shapes={k: v.shape for k, v in fixed.items()}, partitioner=partitioner)
    state = initializer.from_scratch(jax.random.key(0))
    trainer = trainer_lib.Trainer(
        model, train_state=state, partitioner=partitioner, eval_names=[], summary_dir=None,
        train_state_axes=initializer.train_state_axes, rng=jax.random.key(1),
        learning_rate_fn=utils.create_learning_rate_scheduler(factors="constant", base_learning_rate=0.01),
        num_microbatches=None)

    def loss():
        return float(model.loss_fn(trainer.train_state.params, fixed, dropout_rng=None)[0])

    before = loss()
    trainer.train(batches, num_steps=30)
    after = loss()
    trainer.close()  # its metrics writer threads; left to __del__ they fail to join
    print(f"t5x Trainer, 30 steps: loss on a fixed batch {before:.3f} -> {after:.3f}")
    assert trainer.train_state.step == 30
    assert np.isfinite(after) and after < before - 1.0, (before, after)
