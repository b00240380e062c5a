"""Reports for pipeline runs: training curves read back from TensorBoard logs, drawn
as a PNG, and accuracy tables as Markdown."""

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


def plot_curves(runs: dict[str, dict[str, list[tuple[int, float]]]], path: str,
                tags: tuple[str, ...] = ("loss", "learning_rate"), boundaries: dict[str, list[int]] | None = None) -> None:
    """One panel per tag, one line per run; dotted lines mark curriculum stage boundaries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tags), figsize=(5 * len(tags), 3.5), squeeze=False)
    for ax, tag in zip(axes[0], tags):
        for run, scalars in runs.items():
            if tag in scalars:
                steps, values = zip(*scalars[tag])
                ax.plot(steps, values, label=run)
            for step in (boundaries or {}).get(run, []):
                ax.axvline(step, linestyle=":", color="grey")
        ax.set_title(tag)
        ax.set_xlabel("step")
        if tag == "loss":
            ax.set_yscale("log")
        ax.legend()
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
