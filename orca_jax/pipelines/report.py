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
    """Two panels: each run's training loss (from TensorBoard scalars), and its accuracy during
    training (`curves`: `{"step", "bbh/average", "bbh/<task>"}` per evaluation; the average
    solid, each task thin). Dotted lines mark curriculum stage boundaries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for run in scalars:
        points = scalars[run].get("loss", [])
        if points:
            line, = ax_loss.plot(*zip(*points), label=(loss_labels or {}).get(run, run))
        color = line.get_color() if points else None
        curve = curves.get(run, [])
        if curve:
            steps = [c["step"] for c in curve]
            ax_acc.plot(steps, [c["bbh/average"] for c in curve], marker="o", color=color, label=f"{run}: average")
            for task in sorted(k for k in curve[0] if k.startswith("bbh/") and k != "bbh/average"):
                ax_acc.plot(steps, [c[task] for c in curve], linewidth=0.8, alpha=0.5, color=color)
        for ax in (ax_loss, ax_acc):
            for step in (boundaries or {}).get(run, []):
                ax.axvline(step, linestyle=":", color=color or "grey")
    ax_loss.set(title="training loss (dotted: stage boundary)", xlabel="step", ylabel="loss on trained tokens",
                yscale="log")
    ax_acc.set(title="accuracy during training (thin: each family)", xlabel="step", ylabel="accuracy (%)",
               ylim=(-2, 102))
    for ax in (ax_loss, ax_acc):
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
