"""Figures for reports (matplotlib, written without a display)."""

from spikeforge.interface.files import atomic_file

__all__ = ["plot_energy"]


def plot_energy(reports, path):
    """Bar chart of energy per layer (µJ per image), one panel per architecture; written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(reports), 1, figsize=(10, 3.2 * len(reports)), squeeze=False)
    colors = {"mac": "tab:red", "sop": "tab:blue", "attention": "tab:green"}
    for ax, (arch, report) in zip(axes[:, 0], reports.items()):
        layers = report["layers"]
        ax.bar(range(len(layers)), [l["energy_pj"] * 1e-6 for l in layers],
               color=[colors[l["kind"]] for l in layers])
        ax.set_xticks(range(len(layers)), [l["name"] for l in layers], rotation=70, fontsize=7, ha="right")
        ax.set_ylabel("µJ / image")
        ax.set_title(f"{arch}: {report['energy_mj'] * 1e3:.3f} µJ per image "
                     f"({report['non_spike_mults_in_blocks']:.3g} non-spike multiplications in blocks)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    axes[0, 0].legend(handles, ["first conv (MAC)", "spike layer (AC)", "attention (AC)"], fontsize=8)
    fig.tight_layout()
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
