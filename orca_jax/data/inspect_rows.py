"""Human-readable packed rows: segment boundaries, loss-weighted tokens, length histogram, stats."""

from __future__ import annotations

import numpy as np

GREEN, DIM, RESET = "\033[32m", "\033[2m", "\033[0m"
OPEN, CLOSE = "⟦", "⟧"  # marks loss-weighted text when there is no colour


def trained_on(batch: dict[str, np.ndarray], r: int) -> np.ndarray:
    """Per input position: is this token a target with loss weight (predicted from its prefix)?"""
    seg, w = batch["segment_ids"][r], batch["loss_weights"][r]
    out = np.zeros(len(seg), bool)
    out[1:] = (w[:-1] > 0) & (seg[1:] == seg[:-1]) & (seg[1:] > 0)
    return out


def system_label(store, i: int) -> str:
    """Which task example i of a prepared cache comes from and the system message it carries."""
    text = store.system(i)
    if text is None:
        return f"{store.source_names[0]} · system message not recorded (re-run prepare)"
    policy = store.metadata.get("erasing_policy")
    how = f"erased to {policy}" if policy is not None else "teacher's"
    shown = repr(text[:60] + ("…" if len(text) > 60 else "")) if text else "(none)"
    return f"{store.source_names[0]} · system {how}: {shown}"


def format_row(batch: dict[str, np.ndarray], r: int, decode, color: bool, labels: list[str] | None = None) -> str:
    """One row as text: `── segment k (n tokens[ · label]) ──` headers (`labels[k - 1]`),
    weighted tokens green or ⟦marked⟧."""
    seg, ids = batch["segment_ids"][r], batch["inputs"][r]
    weighted = trained_on(batch, r)
    parts, current, in_weight = [], None, False
    for t in range(len(seg)):
        if seg[t] == 0:
            break
        if seg[t] != current:
            if in_weight and not color:
                parts.append(CLOSE)
            in_weight = False
            current = seg[t]
            n = int((seg == current).sum())
            label = f" · {labels[current - 1]}" if labels else ""
            header = f"── segment {current} ({n} tokens){label} ──"
            parts.append(("\n" if t else "") + (f"{DIM}{header}{RESET}" if color else header) + "\n")
        if weighted[t] != in_weight:
            parts.append((GREEN if weighted[t] else RESET) if color else (OPEN if weighted[t] else CLOSE))
            in_weight = bool(weighted[t])
        parts.append(decode([int(ids[t])]))
    if in_weight:
        parts.append(RESET if color else CLOSE)
    padding = int((seg == 0).sum())
    if padding:
        parts.append(f"\n[padding × {padding}]")
    return "".join(parts)


def length_histogram(lengths: np.ndarray, bins: int = 10, width: int = 40) -> str:
    counts, edges = np.histogram(lengths, bins=bins)
    top = max(1, counts.max())
    return "\n".join(f"{int(lo):6d}-{int(hi):<6d} {'█' * int(round(width * c / top)):<{width}} {c}" for c, lo, hi in zip(counts, edges[:-1], edges[1:]))


def format_stats(stats: dict) -> str:
    return (f"rows {stats['rows']}, non-padding {100 * stats['non_padding']:.2f}%, examples per row {stats['examples_per_row']:.2f}, "
            f"dropped (too long) {stats['dropped_too_long']}, split {stats['split_too_long']}")
