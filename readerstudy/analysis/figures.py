"""The dashboard's figures as SVG text (matplotlib, Agg), drawn from the summary tables.

- accuracy: each reader's seven-way accuracy with its 95 % CI, by group; group means as bars; the model's
  accuracy as a dashed line (the paper's Figure 3);
- confusion: row-normalised 7 × 7 matrices (reference rows, diagnosis columns) with counts (Figure 4);
- roc: the model's two-way ROC (P(malignant)) with each reader's operating point (Figure 2);
- calibration: reliability diagram of each group's malignancy likelihood and the model's P(malignant).
"""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from inference.domain import CLASSES, READER_GROUP_TITLES, READER_GROUPS  # noqa: E402

GROUP_COLOURS = {"resident": "#e3a13b", "general": "#4fa3e0", "academic": "#7ec27e"}


def svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def unit_square(figure, axes, xlabel: str, ylabel: str, legend: str) -> str:
    """A [0, 1] × [0, 1] plot with the diagonal, labels and legend, as SVG."""
    axes.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.legend(fontsize=7, loc=legend)
    return svg(figure)


def accuracy_figure(readers, groups, model_accuracy: float | None) -> str:
    figure, axes = plt.subplots(figsize=(7, 3.6))
    x = 0
    ticks, labels = [], []
    for group in READER_GROUPS:
        mine = readers[readers["group"] == group]
        if mine.empty:
            continue
        start = x
        for row in mine.itertuples():
            axes.errorbar(
                x,
                row.accuracy,
                yerr=[[row.accuracy - row.accuracy_low], [row.accuracy_high - row.accuracy]],
                fmt="o",
                color=GROUP_COLOURS[group],
                capsize=3,
            )
            ticks.append(x)
            labels.append(row.reader)
            x += 1
        mean = groups.loc[groups["group"] == group, "mean_accuracy"].iloc[0]
        axes.hlines(
            mean,
            start - 0.4,
            x - 0.6,
            color=GROUP_COLOURS[group],
            lw=3,
            alpha=0.6,
            label=f"{READER_GROUP_TITLES[group]} mean {mean:.0%}",
        )
        x += 0.6
    if model_accuracy is not None:
        axes.axhline(model_accuracy, color="black", ls="--", lw=1.2, label=f"Model {model_accuracy:.0%}")
    axes.set_xticks(ticks, labels, rotation=30, ha="right")
    axes.set_ylim(0, 1.02)
    axes.set_ylabel("Seven-way accuracy (95 % CI)")
    axes.legend(fontsize=8, loc="lower right")
    axes.grid(axis="y", alpha=0.3)
    return svg(figure)


def confusion_figure(matrices: dict[str, np.ndarray]) -> str:
    figure, axes = plt.subplots(1, len(matrices), figsize=(3.3 * len(matrices), 3.5), squeeze=False)
    for ax, (title, matrix) in zip(axes[0], matrices.items(), strict=True):
        rows = matrix.sum(axis=1, keepdims=True)
        ax.imshow(np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0), cmap="Blues", vmin=0, vmax=1)
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(
                    j,
                    i,
                    int(count),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if count > 0.6 * max(rows[i, 0], 1) else "black",
                )
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=60, fontsize=7)
        ax.set_yticks(range(len(CLASSES)), CLASSES, fontsize=7)
        ax.set_xlabel("diagnosis", fontsize=8)
    axes[0][0].set_ylabel("reference", fontsize=8)
    return svg(figure)


def roc_figure(model: dict, points) -> str:
    figure, axes = plt.subplots(figsize=(4.2, 4.2))
    if "roc" in model:
        fpr, tpr, _ = model["roc"]
        auc = model["auc_two_way"]
        axes.plot(fpr, tpr, color="black", label=f"Model, AUC {auc.estimate:.3f} ({auc.low:.3f}-{auc.high:.3f})")
    for group in READER_GROUPS:
        mine = points[points["group"] == group]
        if not mine.empty:
            axes.scatter(
                mine["fpr"],
                mine["tpr"],
                color=GROUP_COLOURS[group],
                edgecolor="black",
                zorder=3,
                label=READER_GROUP_TITLES[group],
            )
    return unit_square(
        figure, axes, "1 − specificity (benign called malignant)", "sensitivity (malignant)", "lower right"
    )


def calibration_figure(curves: dict) -> str:
    figure, axes = plt.subplots(figsize=(4.2, 4.2))
    for who, bins in curves.items():
        colour = GROUP_COLOURS.get(who, "black")
        label = READER_GROUP_TITLES.get(who, "Model")
        axes.plot(
            bins["mean_predicted"],
            bins["observed"],
            marker="o",
            color=colour,
            label=label,
            ls="--" if who == "model" else "-",
        )
    return unit_square(figure, axes, "predicted probability of malignancy", "observed share malignant", "upper left")
