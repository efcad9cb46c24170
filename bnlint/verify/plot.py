"""PNG plot of a report: loss curves and per-BN variance shift, before vs after.

matplotlib is an optional extra (``pip install 'bnlint[plot]'``).
"""
from __future__ import annotations

from bnlint.verify.options import VerifyError

__all__ = ["PlotUnavailable", "require_matplotlib", "write_plot"]

MISSING = "--plot needs matplotlib, which is not installed; install it with: pip install 'bnlint[plot]'"


class PlotUnavailable(VerifyError):
    """matplotlib is missing."""


def require_matplotlib():
    """The pyplot module (Agg backend), or PlotUnavailable with an install hint."""
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable(MISSING) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _model_panels(report: dict, axes) -> None:
    curves_ax, shift_ax = axes
    judged = set((report.get("judged_batchnorms") or {}).get("names") or [])
    trained = False
    for label, colour in (("before", "tab:red"), ("after", "tab:blue")):
        for i, seed in enumerate(report["seeds"]):
            curve = seed[label].get("curve") or []
            trained = trained or bool(curve)
            epochs = [c["epoch"] for c in curve]
            curves_ax.plot(epochs, [c["train_loss"] for c in curve], color=colour, alpha=0.5,
                           label=f"{label} train" if i == 0 and curve else None)
            curves_ax.plot(epochs, [c["val_loss"] for c in curve], color=colour, linestyle="--", alpha=0.8,
                           label=f"{label} val" if i == 0 and curve else None)
        layers = report["seeds"][0][label]["variance_shift"] if report["seeds"] else []
        if layers:
            means = [sum(s[label]["variance_shift"][j]["ratio"] for s in report["seeds"]) / len(report["seeds"])
                     for j in range(len(layers))]
            offset = -0.2 if label == "before" else 0.2
            shift_ax.bar([j + offset for j in range(len(means))], means, width=0.4, color=colour, label=label)
            names = [l["name"] + (" *" if l["name"] in judged else "") for l in layers]
            shift_ax.set_xticks(range(len(means)), names, rotation=45, ha="right")
    if not trained:
        curves_ax.text(0.5, 0.5, "not trained: the variance shift\nwas measured at initialisation",
                       ha="center", va="center", transform=curves_ax.transAxes)
        curves_ax.set_xticks([])
        curves_ax.set_yticks([])
    curves_ax.set(xlabel="epoch", ylabel="loss", title="loss curves")
    shift_ax.axhline(1.0, color="grey", linewidth=0.8)
    shift_ax.set(ylabel="running var / eval-mode input var", title="variance shift per BN (* judged)")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")


def _shuffle_panels(report: dict, axes) -> None:
    risk_ax, norm_ax = axes
    for label, colour in (("before", "tab:red"), ("after", "tab:blue")):
        first = True
        for seed in report["seeds"]:
            for run in seed[label]["runs"]:
                epochs = range(1, len(run["curves"]["eval_risk"]) + 1)
                name = "single shuffle" if label == "before" else "random reshuffle"
                risk_ax.plot(epochs, run["curves"]["eval_risk"], color=colour, alpha=0.4, label=name if first else None)
                norm_ax.plot(epochs, run["curves"]["weight_norm"], color=colour, alpha=0.4, label=name if first else None)
                first = False
    risk_ax.set(xlabel="epoch", ylabel="training risk (eval mode)", title="risk with running BN statistics")
    norm_ax.set(xlabel="epoch", ylabel="weight norm", title="weight norm")
    for ax in axes:
        ax.legend(fontsize="small")


def write_plot(report: dict, path: str) -> None:
    """Write the PNG for a report (as returned by ``VerifyReport.to_dict``)."""
    plt = require_matplotlib()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    try:
        if report["kind"] == "model":
            _model_panels(report, axes)
        else:
            _shuffle_panels(report, axes)
        fig.suptitle(f"{report['before']} -> {report['after']}: {report['verdict']}")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
