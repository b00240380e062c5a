"""The quickstart's training_curves.png (issue 18 item 4): each run's loss on its own panel
(runs trained on different token sets are not comparable on one axis), titled and labelled
axes, stage boundaries drawn and labelled where they are, and the accuracy-during-training panel
where the runs have one."""

import numpy as np

from orca_jax.pipelines.report import training_figure

STEPS = list(range(10, 201, 10))
SCALARS = {"student": {"loss": [(s, 3.0 / s ** 0.3) for s in STEPS]},
           "shallow": {"loss": [(s, 1.0 / s ** 0.5) for s in STEPS]}}
LABELS = {"student": "student (explanation tokens)", "shallow": "shallow (answer tokens)"}
CURVES = {run: [{"step": s, "bbh/average": s / 4 + k, "bbh/a": s / 3, "bbh/b": s / 6} for s in (50, 100, 150, 200)]
          for k, run in enumerate(SCALARS)}


def test_losses_on_separate_titled_panels_with_labelled_stage_boundary():
    fig = training_figure(SCALARS, CURVES, boundaries={"student": [80], "shallow": []}, loss_labels=LABELS)
    loss_student, loss_shallow, accuracy = fig.axes
    for ax, run in ((loss_student, "student"), (loss_shallow, "shallow")):
        assert LABELS[run] in ax.get_title()
        assert ax.get_xlabel() and ax.get_ylabel()
        x, y = ax.lines[0].get_data()
        assert list(x) == STEPS and np.allclose(y, [v for _, v in SCALARS[run]["loss"]])  # only this run's loss
    boundary = [line for line in loss_student.lines if list(line.get_xdata()) == [80, 80]]
    assert boundary and boundary[0].get_linestyle() == ":"
    assert [t.get_text() for t in loss_student.texts] == ["stage 2 starts"]
    assert not loss_shallow.texts and len(loss_shallow.lines) == 1  # one stage: no boundary

    assert "accuracy during training" in accuracy.get_title() and accuracy.get_ylabel() == "accuracy (%)"
    averages = {line.get_label(): list(line.get_ydata()) for line in accuracy.lines if line.get_label().endswith("average")}
    assert averages == {f"{run}: average": [c["bbh/average"] for c in CURVES[run]] for run in SCALARS}
    assert [t.get_text() for t in accuracy.texts] == ["student: stage 2"]


def test_no_accuracy_panel_without_curves():
    fig = training_figure(SCALARS, {}, loss_labels=LABELS)
    assert [ax.get_title() for ax in fig.axes] == [f"training loss: {LABELS[run]}" for run in SCALARS]
