"""The confidence-threshold explorer: what does a threshold ``tau`` keep, and how right is it?

Semi-supervised segmentation methods train on a pseudo label only where its confidence ``conf``
(a teacher's top softmax probability, or a discriminator's sigmoid output) is at least ``tau``.
Raising ``tau`` trades quantity for quality: fewer pixels are kept, and the kept ones are more
often right. This module measures that trade-off on unlabeled images whose true labels we hide
from training but may use for analysis.

Three layers, from plain numbers to the widget:

* :func:`threshold_stats` -- kept share, pseudo-label accuracy and per-class numbers for each
  ``tau``; plain lists, so a chapter can save them as JSON (undefined accuracies are ``NaN``,
  which Python's ``json`` writes and reads back).
* :func:`plot_threshold_curves` and :func:`overlay` -- matplotlib figures.
* :func:`threshold_explorer` -- a slider over ``tau``. With a kernel the slider recomputes the
  panel; in the static book the panels for a few ``tau`` values are precomputed, stacked in an
  ``ipywidgets.Stack`` and the slider is ``jslink``-ed to it, so it works in the browser alone
  (the notebook must be executed with its widget state saved).

ipywidgets is imported inside the functions, so ``import semibook`` never needs it.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os

import numpy as np
import torch

DEFAULT_TAUS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
IGNORE_INDEX = 255

# Class colours for overlays: a muted navy for the background (class 0), then matplotlib's
# "tab10" colours for the ten item classes; more classes cycle through "tab20".
_BACKGROUND_RGB = (0.16, 0.22, 0.42)


# --------------------------------------------------------------------------------------------
# numbers
# --------------------------------------------------------------------------------------------

def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else math.nan


def threshold_stats(conf, pred, target, taus, num_classes: int,
                    ignore_index: int = IGNORE_INDEX, background: int | None = 0) -> dict:
    """What each confidence threshold keeps, and how right the kept pseudo labels are.

    ``conf`` (N, H, W) holds confidences in [0, 1], ``pred`` the pseudo labels and ``target``
    the true labels (used for analysis only; pixels whose target is ``ignore_index`` are left
    out everywhere). A pixel is *kept* at ``tau`` when ``conf >= tau``.

    Returns a dict of plain lists, one entry per ``tau`` (in the order given):

    ``tau``
        the thresholds.
    ``kept``
        share of the scored pixels that are kept.
    ``accuracy``
        share of the kept pixels whose pseudo label is right (``NaN`` when none is kept).
    ``class_coverage``
        per ``tau`` a list over the *true* classes: share of that class's pixels kept
        (``NaN`` for a class absent from ``target``).
    ``class_accuracy``
        per ``tau`` a list over the *true* classes: share of that class's kept pixels whose
        pseudo label is right (``NaN`` when none is kept).
    ``class_precision``
        per ``tau`` a list over the *pseudo-label* classes: share of the kept pixels labelled
        ``c`` that really are ``c`` (``NaN`` when none is kept).

    ``kept_items``, ``accuracy_items``, ``kept_background``, ``accuracy_background``
        the same two shares on the item pixels alone (true class not ``background``) and on the
        background pixels alone; background usually dominates the pixel count, so the overall
        shares mostly say how the background fares. Absent with ``background=None``.

    plus ``num_classes``, ``num_pixels`` (scored pixels) and ``class_pixels`` (scored pixels of
    each true class).
    """
    conf = torch.as_tensor(conf).detach().float().cpu().reshape(-1)
    pred = torch.as_tensor(pred).detach().long().cpu().reshape(-1)
    target = torch.as_tensor(target).detach().long().cpu().reshape(-1)
    if not conf.shape == pred.shape == target.shape:
        raise ValueError("conf, pred and target must have the same number of elements, got "
                         f"{conf.numel()}, {pred.numel()} and {target.numel()}")
    valid = target != ignore_index
    conf, pred, target = conf[valid], pred[valid], target[valid]
    if target.numel() and (target.min() < 0 or target.max() >= num_classes):
        raise ValueError(f"target holds labels outside 0..{num_classes - 1} "
                         f"(and ignore_index={ignore_index})")
    if pred.numel() and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"pred holds labels outside 0..{num_classes - 1}")
    correct = pred == target
    class_pixels = torch.bincount(target, minlength=num_classes)

    out = {"tau": [], "kept": [], "accuracy": [], "class_coverage": [], "class_accuracy": [],
           "class_precision": [], "num_classes": int(num_classes),
           "num_pixels": int(target.numel()), "class_pixels": class_pixels.tolist(),
           "background": background}
    n = target.numel()
    for tau in taus:
        keep = conf >= float(tau)
        n_keep = int(keep.sum())
        n_right = int((keep & correct).sum())
        kept_by_true = torch.bincount(target[keep], minlength=num_classes)
        right_by_true = torch.bincount(target[keep & correct], minlength=num_classes)
        kept_by_pred = torch.bincount(pred[keep], minlength=num_classes)
        out["tau"].append(float(tau))
        out["kept"].append(_ratio(n_keep, n))
        out["accuracy"].append(_ratio(n_right, n_keep))
        if background is not None:
            for part, sel in (("items", target != background), ("background", target == background)):
                k_part = int((keep & sel).sum())
                out.setdefault(f"kept_{part}", []).append(_ratio(k_part, int(sel.sum())))
                out.setdefault(f"accuracy_{part}", []).append(
                    _ratio(int((keep & sel & correct).sum()), k_part))
        out["class_coverage"].append([_ratio(k, t) for k, t in
                                      zip(kept_by_true.tolist(), class_pixels.tolist())])
        out["class_accuracy"].append([_ratio(r, k) for r, k in
                                      zip(right_by_true.tolist(), kept_by_true.tolist())])
        # right pixels with pseudo label c are exactly right pixels with true label c
        out["class_precision"].append([_ratio(r, k) for r, k in
                                       zip(right_by_true.tolist(), kept_by_pred.tolist())])
    return out


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------

def class_colors(num_classes: int) -> np.ndarray:
    """RGB colours in [0, 1], shape (num_classes, 3): class 0 (background) a muted navy."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if num_classes <= 11 else "tab20"]
    cols = [_BACKGROUND_RGB] + [cmap(i % cmap.N)[:3] for i in range(num_classes - 1)]
    return np.asarray(cols[:num_classes], dtype=np.float64)


def _as_rgb(image) -> np.ndarray:
    """An image as float (H, W, 3) in [0, 1]: accepts (3, H, W), (H, W, 3) or (H, W); uint8,
    floats in [0, 1], or normalised floats (rescaled to their own range)."""
    img = torch.as_tensor(image).detach().cpu()
    if img.dtype == torch.uint8:
        img = img.float() / 255.0
    img = img.float()
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = img.permute(1, 2, 0)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = img.expand(*img.shape[:2], 3)
    if img.min() < 0 or img.max() > 1:
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo).clamp_min(1e-8)
    return img.numpy().astype(np.float64)


def overlay_rgb(image, conf, pred, tau: float, num_classes: int = 11,
                alpha: float = 0.6) -> np.ndarray:
    """The overlay as an (H, W, 3) array: kept pixels tinted with their pseudo label's colour,
    dropped pixels turned to a washed-out grey."""
    rgb = _as_rgb(image)
    conf = torch.as_tensor(conf).detach().float().cpu().numpy()
    pred = torch.as_tensor(pred).detach().long().cpu().numpy()
    keep = conf >= float(tau)
    tint = class_colors(num_classes)[np.clip(pred, 0, num_classes - 1)]
    grey = rgb.mean(axis=-1, keepdims=True)
    dropped = np.repeat(0.35 * grey + 0.55, 3, axis=-1)
    kept = (1 - alpha) * rgb + alpha * tint
    return np.where(keep[..., None], kept, dropped)


def overlay(image, conf, pred, tau: float, ax=None, num_classes: int = 11,
            title: str | None = None):
    """Show ``image`` with the pixels kept at ``tau`` coloured by their pseudo label and the
    dropped ones greyed out. Returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(3, 3))[1]
    ax.imshow(overlay_rgb(image, conf, pred, tau, num_classes), interpolation="nearest")
    keep = torch.as_tensor(conf).float() >= float(tau)
    ax.set_title(title if title is not None else
                 f"tau = {tau:g}: {100 * keep.float().mean():.0f}% kept", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    return ax


def plot_threshold_curves(stats: dict, ax=None, mark: float | None = None):
    """Kept share and pseudo-label accuracy (in %) against ``tau``, on the item pixels (solid)
    and on all pixels (dashed) where ``stats`` splits them; ``mark`` draws a vertical line at
    one threshold. Returns the axes."""
    import matplotlib.pyplot as plt

    from .viz import outside_legend
    ax = ax or plt.subplots()[1]
    taus = stats["tau"]
    parts = [("_items", "item pixels", "-"), ("", "all pixels", "--")] \
        if "kept_items" in stats else [("", "pixels", "-")]
    for suffix, what, ls in parts:
        ax.plot(taus, [100 * v for v in stats["kept" + suffix]], marker="o", ms=3, ls=ls,
                color="#3b6ea5", label=f"{what}: kept")
        ax.plot(taus, [100 * v for v in stats["accuracy" + suffix]], marker="o", ms=3, ls=ls,
                color="#4c9f70", label=f"{what}: accuracy of the kept pseudo labels")
    if mark is not None:
        ax.axvline(mark, color="0.4", ls=":", lw=1)
    ax.set_xlabel("confidence threshold tau")
    ax.set_ylabel("%")
    ax.set_ylim(0, 102)
    outside_legend(ax, ncol=2)
    return ax


def plot_class_coverage(stats: dict, i: int = 0, class_names=None, ax=None):
    """Bars: share of each true class's pixels kept at ``stats["tau"][i]``, with the accuracy of
    the kept ones written on each bar. Returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots()[1]
    k = stats["num_classes"]
    names = _class_names(k, class_names)
    cov = [100 * v if not math.isnan(v) else 0.0 for v in stats["class_coverage"][i]]
    acc = stats["class_accuracy"][i]
    ax.barh(range(k), cov, color=class_colors(k))
    for c, (v, a) in enumerate(zip(cov, acc)):
        if not math.isnan(a):
            ax.text(min(v, 100) + 1, c, f"{100 * a:.0f}% right", va="center", fontsize=7)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 125)
    ax.set_xticks([0, 25, 50, 75, 100])
    ax.set_xlabel("pixels of the true class kept (%)")
    return ax


# --------------------------------------------------------------------------------------------
# the explorer
# --------------------------------------------------------------------------------------------

def _class_names(num_classes: int, class_names=None) -> list[str]:
    if class_names is not None:
        return [str(c) for c in class_names]
    from .data.scenes import VARIANTS
    for v in VARIANTS.values():
        if num_classes == v.num_classes:
            return list(v.classes)
    return [str(c) for c in range(num_classes)]


def in_kernel() -> bool:
    """True when running inside a Jupyter (IPython) kernel, where widget callbacks work."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def _summary(stats: dict, i: int) -> str:
    """One line per ``tau``: the item pixels first (where the method's pseudo labels matter
    and are hardest), then the background, then all pixels together."""
    def part(kept, acc, what):
        acc_txt = "none kept" if math.isnan(acc) else f"{100 * acc:.1f}% of the kept ones right"
        return f"{what}: keeps {100 * kept:.1f}%, {acc_txt}"

    head = f"tau = {stats['tau'][i]:g}: "
    overall = part(stats["kept"][i], stats["accuracy"][i],
                   f"all {stats['num_pixels']} pixels")
    if stats.get("background") is None:
        return head + overall
    bg = stats["class_pixels"][stats["background"]]
    share = _ratio(stats["num_pixels"] - bg, stats["num_pixels"])
    return head + "; ".join([
        part(stats["kept_items"][i], stats["accuracy_items"][i],
             f"item pixels ({100 * share:.0f}% of the pixels)"),
        part(stats["kept_background"][i], stats["accuracy_background"][i], "background"),
        overall])


def _panel_figure(stats, i, images, conf, pred, class_names, n_show):
    import matplotlib.pyplot as plt

    tau, k = stats["tau"][i], stats["num_classes"]
    fig = plt.figure(figsize=(2.6 + 1.9 * n_show, 2.6), dpi=80)
    grid = fig.add_gridspec(1, n_show + 1, width_ratios=[1.5] + [1] * n_show, wspace=0.08)
    plot_class_coverage(stats, i, class_names, ax=fig.add_subplot(grid[0]))
    for j in range(n_show):
        overlay(images[j], conf[j], pred[j], tau, ax=fig.add_subplot(grid[j + 1]),
                num_classes=k, title=f"image {j}")
    return fig


def _fig_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _panel_html(stats, i, images, conf, pred, class_names, n_show) -> str:
    png = _fig_png(_panel_figure(stats, i, images, conf, pred, class_names, n_show))
    data = base64.b64encode(png).decode("ascii")
    return (f"<div><p>{html.escape(_summary(stats, i))}</p>"
            f'<img alt="kept pixels at tau={stats["tau"][i]:g}" '
            f'src="data:image/png;base64,{data}" style="max-width:100%"/></div>')


def threshold_explorer(images, conf, pred, target, taus=None, num_classes: int = 11,
                       class_names=None, live: bool | None = None, n_show: int = 3,
                       tau: float = 0.9, ignore_index: int = IGNORE_INDEX):
    """A slider over the confidence threshold ``tau`` for pseudo labels ``pred`` with confidence
    ``conf`` on ``images`` (all with N first; ``target`` holds the true labels, for analysis).
    Each position shows the kept share and accuracy, per-class coverage bars and overlays of
    the first ``n_show`` images.

    ``live=True`` (the default inside a kernel; the environment variable ``SEMIBOOK_WIDGETS``
    set to ``static`` or ``live`` overrides that guess, e.g. when executing the notebooks whose
    outputs the static book shows): a ``FloatSlider`` whose callback recomputes the
    panel into an ``Output``. ``live=False``: one precomputed panel per value in ``taus``
    (default :data:`DEFAULT_TAUS`) in an ``ipywidgets.Stack``, switched by a
    ``SelectionSlider`` ``jslink``-ed to the Stack, so it works in static HTML without a kernel.

    Returns a ``VBox``; for convenience it carries ``.slider``, ``.stats`` and either
    ``.output`` (live) or ``.stack`` and ``.link`` (static).
    """
    import ipywidgets as W

    if live is None:
        mode = os.environ.get("SEMIBOOK_WIDGETS", "").strip().lower()
        if mode not in ("", "live", "static"):
            raise ValueError(f"SEMIBOOK_WIDGETS={mode!r}: use 'live' or 'static'")
        live = mode == "live" or (mode == "" and in_kernel())
    n_show = max(0, min(n_show, len(images)))
    names = _class_names(num_classes, class_names)

    def stats_for(ts):
        return threshold_stats(conf, pred, target, ts, num_classes, ignore_index)

    if live:
        slider = W.FloatSlider(value=tau, min=0.0, max=1.0, step=0.01, description="tau",
                               readout_format=".2f", continuous_update=False)
        output = W.Output()

        def show(change=None):
            stats = stats_for([slider.value])
            output.outputs = ({"output_type": "display_data", "metadata": {},
                               "data": {"text/plain": _summary(stats, 0),
                                        "text/html": _panel_html(stats, 0, images, conf, pred,
                                                                 names, n_show)}},)
            box.stats = stats

        slider.observe(show, names="value")
        box = W.VBox([slider, output])
        box.slider, box.output = slider, output
        show()
        return box

    taus = [float(t) for t in (DEFAULT_TAUS if taus is None else taus)]
    if not taus:
        raise ValueError("taus must hold at least one threshold")
    stats = stats_for(taus)
    panels = [W.HTML(_panel_html(stats, i, images, conf, pred, names, n_show))
              for i in range(len(taus))]
    start = min(range(len(taus)), key=lambda i: abs(taus[i] - tau))
    stack = W.Stack(panels, selected_index=start)
    slider = W.SelectionSlider(options=[(f"{t:g}", i) for i, t in enumerate(taus)],
                               index=start, description="tau", continuous_update=True)
    # SelectionSlider syncs its position as `index`; the link runs in the browser
    link = W.jslink((slider, "index"), (stack, "selected_index"))
    box = W.VBox([slider, stack])
    box.slider, box.stack, box.link, box.stats = slider, stack, link, stats
    return box


def explorer_from_results(results: dict, data, conf: str = "track_conf", **kw):
    """The threshold explorer for a finished segmentation run, without its weights: the
    tracked model's confidences and pseudo labels on the first tracked unlabeled scenes are
    stored in the results file (``results["samples"]``); ``data`` (the run's dataset, e.g.
    ``load_dataset("fashion-scenes")``) supplies those scenes and their hidden labels.
    ``conf`` names the stored confidence map: ``track_conf`` (the tracked model's top softmax
    probability) or a method's own, e.g. the adversarial method's ``track_dconf`` (its
    discriminator's output)."""
    from .engine.evaluate import decode

    s = results.get("samples") or {}
    if "track_index" not in s:
        raise ValueError(f"results of {results.get('method')!r} carry no tracked samples "
                         "(written before they were stored, or not a segmentation run)")
    if conf not in s:
        raise ValueError(f"results of {results.get('method')!r} carry no {conf!r} map (written "
                         f"before it was stored, or another method)")
    idx = torch.as_tensor(s["track_index"], dtype=torch.long)
    conf = decode(s[conf]).float() / 255
    pred = decode(s["track_pseudo"]).long()
    kw.setdefault("num_classes", data.info.num_classes)
    kw.setdefault("ignore_index", data.info.ignore_index)
    return threshold_explorer(data.x_train[idx], conf, pred, data.y_train[idx].long(), **kw)
