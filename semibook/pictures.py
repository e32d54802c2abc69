"""Pictures for the chapters (matplotlib only): label maps in colour, segmentation grids, the
stored predictions and confidence maps of finished runs, and the training-step diagrams. The
curves and bars are in :mod:`semibook.viz`."""

from __future__ import annotations


# background dark grey, then ten distinct colours for the Fashion-MNIST classes
PALETTE = [(40, 40, 40), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
           (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60),
           (250, 190, 212)]


def label_to_rgb(mask, ignore_index: int = 255):
    """A label map (H, W) as an RGB image: one colour per class, white where ignored."""
    import numpy as np
    m = np.asarray(mask).astype(np.int64)
    pal = np.array(PALETTE + [(255, 255, 255)] * (256 - len(PALETTE)), dtype=np.uint8)
    pal[ignore_index] = (255, 255, 255)
    return pal[m % 256]


def show_segmentation(columns: dict[str, list], n: int, class_names=None, title: str = ""):
    """A grid: one row per image, one column per entry of ``columns`` (images as (3, H, W)
    tensors in [0, 255] or [0, 1], label maps as (H, W)); with ``class_names`` a legend of the
    classes' colours, and of white where a label map shows ignored pixels (255)."""
    import matplotlib.pyplot as plt
    import numpy as np
    side = min(1.8, 7.2 / len(columns))  # the whole grid within the book's column
    fig, axes = plt.subplots(n, len(columns), figsize=(side * len(columns), side * n),
                             squeeze=False)
    ignored = False
    for c, (name, items) in enumerate(columns.items()):
        for r in range(n):
            a = np.asarray(items[r])
            if a.ndim == 3:  # an image
                a = a.transpose(1, 2, 0)
                a = a / 255 if a.max() > 1 else a
            else:
                ignored = ignored or bool((a == 255).any())
                a = label_to_rgb(a)
            axes[r, c].imshow(a, interpolation="nearest")
            axes[r, c].axis("off")
        axes[0, c].set_title(name, fontsize=8)
    if class_names:
        from matplotlib.patches import Patch
        handles = [Patch(color=np.array(PALETTE[i]) / 255) for i in range(len(class_names))]
        names = list(class_names)
        if ignored:  # white in a label map: no label there
            handles.append(Patch(facecolor="white", edgecolor="grey"))
            names.append("ignored")
        fig.legend(handles, names, loc="lower center", ncol=min(6, len(names)), fontsize=7,
                   bbox_to_anchor=(0.5, -0.02))
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.06 if class_names else 0, 1, 1))
    return fig


def show_predictions(results: dict[str, dict], data, n: int = 4, class_names=None):
    """The label maps each run predicted at its end on the first ``n`` test scenes that
    it stored (the same scenes in every run), beside the scene and its true map: read from the
    results files, so they show without the weights."""
    from .engine.evaluate import decode
    shown = next(iter(results.values()))["samples"]["test_index"][:n]
    cols = {"scene": [data.x_test[i] for i in shown], "truth": [data.y_test[i] for i in shown]}
    for name, r in results.items():
        if list(r["samples"]["test_index"][:n]) != list(shown):
            raise ValueError(f"{name} stored other test scenes than the first run")
        cols[name] = list(decode(r["samples"]["test_pred"])[:n])
    return show_segmentation(cols, n, class_names=class_names)


def diagram_svg(name: str) -> str:
    """The training-step diagram ``book/diagrams/<name>.dot`` drawn by graphviz's ``dot`` as
    SVG text (raises when ``dot`` is not installed: Debian's ``graphviz``)."""
    import shutil
    import subprocess

    from .paths import ROOT
    src = ROOT / "book" / "diagrams" / f"{name}.dot"
    exe = shutil.which("dot")
    if exe is None:
        raise FileNotFoundError("graphviz's `dot` is not installed (apt-get install graphviz)")
    out = subprocess.run([exe, "-Tsvg", str(src)], capture_output=True, text=True, check=True)
    return out.stdout


def show_diagram(name: str):
    """Display the diagram ``book/diagrams/<name>.dot`` as an SVG output, so that the notebook
    itself (Jupyter, nbviewer) and the book show the same picture drawn from the same source;
    without ``dot`` the source is shown instead, with a note."""
    from IPython.display import SVG, Markdown, display
    try:
        display(SVG(diagram_svg(name)))
    except FileNotFoundError as e:
        from .paths import ROOT
        src = (ROOT / "book" / "diagrams" / f"{name}.dot").read_text()
        display(Markdown(f"({e}; the diagram's source:)\n\n```dot\n{src}```"))


def show_confidence_maps(results: dict, data, key: str = "track_dconf", n: int = 4,
                         tau: float | None = None, title: str = "confidence", vmax: float = 1.0,
                         most_kept: bool = False):
    """The tracked unlabeled scenes of a finished segmentation run, read from its results
    file: the scene, its hidden true map, the run's pseudo labels and a stored confidence map
    (``key``, e.g. the discriminator's ``track_dconf``) in grey from 0 (black) to 1 (white),
    with the pixels under ``tau`` outlined in the last column. ``vmax``: the value drawn white
    (a map whose values are all small reads better on a stretched scale); ``most_kept``: the
    ``n`` tracked scenes with the largest share of pixels at or above ``tau``, in that order,
    instead of the first ``n``. Raises where the file holds no such map."""
    import matplotlib.pyplot as plt
    import numpy as np

    from .engine.evaluate import decode
    s = results.get("samples") or {}
    if key not in s:
        raise ValueError(f"the results file holds no {key!r} map")
    conf = decode(s[key]).float().numpy() / 255
    pos = list(range(len(conf)))
    if most_kept and tau is not None:
        pos.sort(key=lambda i: -float((conf[i] >= tau).mean()))
    pos = pos[:n]
    idx = [s["track_index"][i] for i in pos]
    conf, pseudo = conf[pos], decode(s["track_pseudo"]).numpy()[pos]
    cols = ["scene", "truth (hidden)", "pseudo label", title]
    fig, axes = plt.subplots(len(idx), 4, figsize=(6.4, 1.7 * len(idx)), squeeze=False)
    for r, i in enumerate(idx):
        img = np.asarray(data.x_train[i]).transpose(1, 2, 0)
        panels = [img / 255 if img.max() > 1 else img, label_to_rgb(data.y_train[i]),
                  label_to_rgb(pseudo[r])]
        for c, a in enumerate(panels):
            axes[r, c].imshow(a, interpolation="nearest")
        im = axes[r, 3].imshow(conf[r], cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
        if tau is not None:
            axes[r, 3].contour(conf[r] >= tau, levels=[0.5], colors="#e6194b", linewidths=0.8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    for c, name in enumerate(cols):
        axes[0, c].set_title(name + (f"\n(red: edge of >= {tau:g})" if c == 3 and tau is not None
                                     else ""), fontsize=8)
    fig.subplots_adjust(right=0.9)  # the colour bar beside the grid, not inside its column
    fig.colorbar(im, cax=fig.add_axes((0.92, 0.3, 0.015, 0.4)))
    return fig
