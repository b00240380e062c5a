"""Reports for pipeline runs: training curves read back from TensorBoard logs, drawn
as a PNG, and accuracy and step-diagnostics tables as Markdown."""

from __future__ import annotations

import glob
import os


def read_scalars(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] from every event file under `log_dir`, sorted by step."""
    import tensorflow as tf  # the event-file reader; only needed when reporting

    scalars: dict[str, dict[int, float]] = {}
    for path in sorted(glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True)):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                # tensorboardX writes simple_value; TF2 summaries write a scalar tensor.
                number = value.simple_value if not value.HasField("tensor") else float(tf.make_ndarray(value.tensor))
                scalars.setdefault(value.tag, {})[event.step] = number
    return {tag: sorted(points.items()) for tag, points in scalars.items()}


def plot_training(scalars: dict[str, dict[str, list[tuple[int, float]]]], curves: dict[str, list[dict]], path: str,
                  boundaries: dict[str, list[int]] | None = None, loss_labels: dict[str, str] | None = None) -> None:
    """`training_figure` written to `path` as a PNG."""
    import matplotlib.pyplot as plt

    fig = training_figure(scalars, curves, boundaries, loss_labels)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def training_figure(scalars: dict[str, dict[str, list[tuple[int, float]]]], curves: dict[str, list[dict]],
                    boundaries: dict[str, list[int]] | None = None, loss_labels: dict[str, str] | None = None):
    """One loss panel per run (from TensorBoard scalars): runs that train on different token
    sets (explanations vs answers only) have losses that are not comparable on one axis. Then,
    where any run has `curves` (`{"step", "bbh/average", "bbh/<task>"}` per evaluation), a panel
    of accuracy during training: each run's average solid, each task thin. Dotted lines mark
    curriculum stage boundaries, labelled with the stage that starts there."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [run for run in scalars if scalars[run].get("loss")]
    with_curves = [run for run in scalars if curves.get(run)]
    panels = len(runs) + bool(with_curves)
    fig, axes = plt.subplots(1, max(panels, 1), figsize=(5.5 * max(panels, 1), 4), squeeze=False)
    colors = {run: f"C{k}" for k, run in enumerate(scalars)}
    for ax, run in zip(axes[0], runs):
        ax.plot(*zip(*scalars[run]["loss"]), marker=".", color=colors[run])
        ax.set(title=f"training loss: {(loss_labels or {}).get(run, run)}", xlabel="training step",
               ylabel="cross-entropy on trained tokens (nats)", yscale="log")
        _mark_stages(ax, (boundaries or {}).get(run, []), colors[run])
    if with_curves:
        ax_acc = axes[0][len(runs)]
        for run in with_curves:
            curve = curves[run]
            steps = [c["step"] for c in curve]
            ax_acc.plot(steps, [c["bbh/average"] for c in curve], marker="o", color=colors[run],
                        label=f"{run}: average")
            for task in sorted(k for k in curve[0] if k.startswith("bbh/") and k != "bbh/average"):
                ax_acc.plot(steps, [c[task] for c in curve], linewidth=0.8, alpha=0.5, color=colors[run])
            _mark_stages(ax_acc, (boundaries or {}).get(run, []), colors[run], label_run=run)
        ax_acc.set(title="accuracy during training (thin: each task)", xlabel="training step",
                   ylabel="accuracy (%)", ylim=(-2, 102))
        ax_acc.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _mark_stages(ax, starts: list[int], color: str, label_run: str | None = None) -> None:
    """A dotted line at each stage boundary, labelled "stage k+1 starts" (named after the run
    where several runs share the axes)."""
    for k, step in enumerate(starts):
        ax.axvline(step, linestyle=":", color=color)
        text = f"{label_run}: stage {k + 2}" if label_run else f"stage {k + 2} starts"
        ax.annotate(text, xy=(step, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                    textcoords="offset points", fontsize=8, color=color)


def accuracy_table(columns: dict[str, dict[str, float]], row_label: str = "task") -> str:
    """Markdown table: one row per task (then the average), one column per model;
    values are accuracies in percent."""
    names = list(columns)
    tasks = [t for t in next(iter(columns.values())) if t != "average"]
    lines = [f"| {row_label} | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for task in tasks + ["average"]:
        cells = [f"{columns[n][task]:.1f}" for n in names]
        label = f"**{task}**" if task == "average" else task
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def step_table(diagnostics: dict[str, dict]) -> str:
    """Markdown table of step diagnostics (`step_diagnostics.summarize_steps`), one row per task:
    % of predictions with steps, with every step right, and the kind of their first error."""
    lines = ["| task | explained | all steps right | first error: copy | compute | missing | extra |",
             "|---|---|---|---|---|---|---|"]
    for task, d in diagnostics.items():
        errors = d["first_error"]
        lines.append(f"| {task} | {d['explained']:.0f} | {d['all_steps_right']:.0f} | {errors['copy']:.0f} | "
                     f"{errors['compute']:.0f} | {errors['missing']:.0f} | {errors['extra']:.0f} |")
    return "\n".join(lines)


def plot_bars(values: dict[str, dict[str, float]], path: str, title: str) -> None:
    """Bar per condition: `{"mean", "std"}` drawn as height and error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(values)
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 1, 3.5))
    ax.bar(names, [values[n]["mean"] for n in names], yerr=[values[n]["std"] for n in names], capsize=4)
    ax.set_title(title)
    ax.set_ylabel("accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
