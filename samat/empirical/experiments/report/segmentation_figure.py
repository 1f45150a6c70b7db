"""The segmentation figure: a few test images with their ground truth, and each method's prediction clean and under
attack, side by side. Drawn from the examples each evaluation saved (``examples.npz`` beside ``eval.json``): making
the figure runs no model.

One run per training method (the first label of each method, its first finished seed; at most
:data:`MAX_METHODS`), the first attack column of the experiment. Classes get PASCAL VOC's colour map (distinct,
saturated colours, background black); ignored pixels are light grey; the legend names the classes shown.
"""

from __future__ import annotations

import numpy as np

from samat.core.errors import SamatError
from samat.empirical.evaluation.columns import NATURAL
from samat.empirical.experiments.grid import Experiment

MAX_METHODS = 4
MAX_IMAGES = 3
IGNORED_COLOUR = (0.85, 0.85, 0.85)


def voc_colours(count: int) -> np.ndarray:
    """PASCAL VOC's colour map: class c's RGB bits are c's bits interleaved from the most significant down."""
    colours = np.zeros((count, 3))
    for c in range(count):
        value, r, g, b = c, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colours[c] = (r / 255, g / 255, b / 255)
    return colours


def _colour(mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    out = np.empty((*mask.shape, 3))
    ignored = mask >= len(palette)
    out[~ignored] = palette[mask[~ignored]]
    out[ignored] = IGNORED_COLOUR
    return out


def _examples(exp: Experiment) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(label, examples) of the first finished, evaluated run of each method's first label."""
    chosen, methods = [], set()
    for label in exp.labels:
        spec = exp.runs_for(label)[0]
        if spec.config.method in methods or len(chosen) >= MAX_METHODS:
            continue
        for run in exp.finished(label):
            path = run.path / "examples.npz"
            if path.exists():
                try:
                    with np.load(path, allow_pickle=False) as z:
                        chosen.append((label, {k: z[k] for k in z.files}))
                except (OSError, ValueError, EOFError) as err:
                    raise SamatError(f"{path} cannot be read ({err}): evaluate the run again with "
                                     "--overwrite") from None
                methods.add(spec.config.method)
                break
    return chosen


def draw_examples(exp: Experiment, plt):
    """The figure (None when no evaluated run has examples)."""
    chosen = _examples(exp)
    attack = next(iter(exp.attacks), None)
    if not chosen or attack is None:
        return None
    first = chosen[0][1]
    classes = [str(c) for c in first["classes"]]
    palette = voc_colours(len(classes))
    rows = min(MAX_IMAGES, len(first["images"]))
    columns = 2 + 2 * len(chosen)
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 1.9 * rows + 0.9), squeeze=False,
                             constrained_layout=True)
    shown: set[int] = set()
    for i in range(rows):
        h, w = (int(v) for v in first["sizes"][i])
        image = first["images"][i][:, :h, :w].transpose(1, 2, 0)
        panels = [("image", image[..., 0] if image.shape[-1] == 1 else image, "gray"),
                  ("ground truth", first["masks"][i][:h, :w], None)]
        for label, ex in chosen:
            panels += [(f"{label}\nclean", ex[f"pred:{NATURAL}"][i][:h, :w], None),
                       (f"{label}\n{attack}", ex[f"pred:{attack}"][i][:h, :w], None)]
        for ax, (title, content, cmap) in zip(axes[i], panels, strict=True):
            if cmap is None:
                shown |= set(np.unique(content[content < len(classes)]).tolist())
                ax.imshow(_colour(content, palette), interpolation="nearest")
            else:
                ax.imshow(content, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
            if i == 0:
                ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    from matplotlib.patches import Patch  # matplotlib only where figures are drawn, after the backend is set

    handles = [Patch(color=palette[c], label=classes[c]) for c in sorted(shown)]
    if (first["masks"][:rows] >= len(classes)).any():
        handles.append(Patch(color=IGNORED_COLOUR, label="ignored"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False)
    fig.suptitle(f"Predictions clean and under {attack} ({exp.name})", fontsize=10)
    return fig


def example_sources(exp: Experiment) -> list[str]:
    """The examples files the figure is drawn from (for the figures' provenance)."""
    sources = []
    for label in exp.labels:
        for run in exp.finished(label):
            if (run.path / "examples.npz").exists():
                sources.append(str(run.path / "examples.npz"))
    return sources

