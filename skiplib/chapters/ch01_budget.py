"""Chapter 1 at growing budgets: does the plain-56 minus plain-20 gap survive longer training?

Every ``degradation-*`` result (the reader's live run, the reference runs in ``results/``) becomes a
row of :func:`budget_row`: its budget (training images x epochs at one image size) and its nets'
final training errors. :func:`gap_table`, :func:`plot_gap_budget` and :func:`gap_verdict` show
the rows as a table, a figure and a sentence; :func:`paper_table` sets the runs' test errors beside
He et al.'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from skiplib.results import device_label
from skiplib.train import History

CIFAR_TRAIN_IMAGES = 50_000
PAIR = ("plain20", "plain56")  # He et al.'s Fig. 1 pair: the gap the chapter is about
NETS = (*PAIR, "resnet20", "resnet56")  # the pair and its ResNet twins: one setting's full picture
# one colour per setting, neither red nor blue (the course's plain and residual colours) and no two
# alike: the palette's "other" colours alternate greens and purples, too close for four settings
SETTING_COLORS = ("#1b7837", "#762a83", "#e08214", "#4d4d4d", "#8c510a")


def budget_row(label: str, result: Mapping) -> dict | None:
    """One row of the gap-vs-budget table for a degradation result (``config``, ``histories`` of
    records or :class:`History`, optional ``provenance``), or None if it lacks plain-20 or plain-56:
    its budget (training images x epochs at one image size) and the nets' final training errors."""
    histories = {k: (h.records if isinstance(h, History) else h) for k, h in result["histories"].items()}
    if any(not histories.get(name) for name in PAIR):
        return None
    cfg = result["config"]
    images = cfg.get("train_subset") or CIFAR_TRAIN_IMAGES
    epochs = len(histories[PAIR[0]])
    final = {name: h[-1]["train_err"] for name, h in histories.items() if h}
    return {"run": label, "device": device_label(result.get("provenance", {}).get("device", "")), "image_size": cfg["image_size"],
            "images": images, "epochs": epochs, "passes": images * epochs, "final": final,
            "gap": final[PAIR[1]] - final[PAIR[0]], "partial": bool(result.get("partial"))}


def gap_table(rows: Sequence[Mapping]) -> str:
    """The rows of :func:`budget_row` as a Markdown table, smallest budget first."""
    lines = ["| run | device | images × epochs | size | plain-20 | plain-56 | gap (points) | ResNet-20 | ResNet-56 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["image_size"], r["passes"])):
        res = [f"{r['final'][k]:.1%}" if k in r["final"] else "—" for k in ("resnet20", "resnet56")]
        lines.append(f"| {r['run']} | {r['device']} | {r['images']:,} × {r['epochs']} | {r['image_size']}×{r['image_size']} "
                     f"| {r['final'][PAIR[0]]:.1%} | {r['final'][PAIR[1]]:.1%} | {100 * r['gap']:+.1f} | {' | '.join(res)} |")
    return "\n".join(lines)


def gap_verdict(rows: Sequence[Mapping], *, closed: float = 0.01) -> str:
    """What the table shows, in words: for every setting (image size and training images) with two or
    more budgets, whether the plain-56 minus plain-20 gap holds, shrinks or grows from the smallest
    budget to the largest, and whether it closes (below ``closed``)."""
    sentences = []
    for (size, images), group in settings(rows).items():
        if len(group) < 2:
            continue
        gaps = ", ".join(f"{100 * r['gap']:.1f} points after {r['epochs']} epochs" for r in group)
        first, last = group[0]["gap"], group[-1]["gap"]
        if last < closed:
            trend = "the gap closes as the budget grows"
        elif last < first - closed:
            trend = "it shrinks as the budget grows, but does not close"
        elif last > first + closed:
            trend = "it grows with the budget"
        else:
            trend = "it holds as the budget grows"
        sentences.append(f"On {size}×{size} images ({images:,} of them) the gap is {gaps}: {trend}.")
    return " ".join(sentences) or "No setting has been run at two budgets yet, so the table cannot say how the gap moves."


# He et al. 2016, Table 6: CIFAR-10 test error of their ResNets, quoted from the paper (not computed
# here): 64k iterations of batch 128 (about 164 epochs), lr 0.1 divided by 10 at 32k and 48k, weight
# decay 1e-4, 4-pixel pad + random crop + flip, 32x32. Their plain nets appear only in Fig. 6.
PAPER_TEST_ERRORS = {"resnet20": 0.0875, "resnet32": 0.0751, "resnet44": 0.0717, "resnet56": 0.0697}


def paper_table(runs: Mapping[str, Mapping]) -> str:
    """A Markdown table of test errors: He et al.'s (Table 6) beside each of ``runs`` (a label, e.g.
    "your run (cpu profile, 6 epochs)", to a degradation result's histories); a net a run lacks is a dash."""
    nets = ("plain20", "plain56", "resnet20", "resnet56")
    head = "| net | He et al. (164 epochs) | " + " | ".join(runs) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(runs)]
    for net in nets:
        paper = f"{PAPER_TEST_ERRORS[net]:.2%}" if net in PAPER_TEST_ERRORS else "figure only"
        cells = []
        for histories in runs.values():
            h = histories.get(net)
            records = h.records if isinstance(h, History) else h
            cells.append(f"{records[-1]['test_err']:.1%}" if records else "—")
        lines.append(f"| {net} | {paper} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curves_reference(results: Mapping[str, Mapping]) -> str | None:
    """Of ``results`` (name to degradation result), the reference whose training curves the chapter
    draws: the one with most of :data:`NETS` trained, then complete before partial, then the most
    training images, the larger image size and the longest schedule; None for no results."""
    def rank(name: str) -> tuple:
        r = results[name]
        nets = sum(bool(r["histories"].get(net)) for net in NETS)
        cfg = r["config"]
        epochs = max((len(h) for h in r["histories"].values()), default=0)
        return (nets, not r.get("partial"), cfg.get("train_subset") or CIFAR_TRAIN_IMAGES, cfg["image_size"], epochs)
    return max(results, key=rank, default=None)


def shortcut_verdict(row: Mapping) -> str:
    """One sentence on a :func:`budget_row` that has all of :data:`NETS`: how far each deep net ends
    from its shallow twin, without and with shortcuts; for a row that lacks one of them, a sentence
    that says which nets it lacks, so the chapter never claims what the run did not measure."""
    final = row["final"]
    missing = [net for net in NETS if net not in final]
    if missing:
        return (f"The run {row['run']} did not train {' or '.join(missing)}, so it cannot set the cost of "
                "depth with shortcuts beside the cost without them.")
    plain = 100 * (final["plain56"] - final["plain20"])
    res = 100 * (final["resnet56"] - final["resnet20"])

    def relation(points: float) -> str:
        return f"{abs(points):.1f} points {'above' if points > 0 else 'below'}" if abs(points) >= 0.05 else "level with"

    if res < 0:
        ending = "with shortcuts the deeper net is the better one, as in the paper"
    elif res < plain:
        ending = "shortcuts shrink the cost of depth, though at this budget they do not remove it"
    else:
        ending = "here shortcuts do not reduce the cost of depth"
    return (f"On {row['images']:,} training images at {row['image_size']}×{row['image_size']} "
            f"({row['epochs']} epochs), plain-56 ends {relation(plain)} plain-20 in training error, "
            f"ResNet-56 {relation(res)} ResNet-20: {ending}.")


def paper_columns(rows: Sequence[Mapping], results: Mapping[str, Mapping]) -> dict[str, Mapping]:
    """The reference columns of :func:`paper_table`: for every setting (:func:`settings`) of the
    reference ``rows``, its largest budget, labelled by setting and epochs, to its histories in
    ``results`` (name to result; each row's ``run`` is its name)."""
    columns = {}
    for (size, images), group in settings(rows).items():
        r = group[-1]
        columns[f"{r['run']} ({size}×{size}, {images // 1000}k images, {r['epochs']} epochs)"] = \
            results[r["run"]]["histories"]
    return columns


def settings(rows: Sequence[Mapping]) -> dict[tuple[int, int], list[Mapping]]:
    """The rows grouped by setting, ``(image size, training images)``, each group smallest budget first:
    only budgets within one setting are comparable (a larger image or training set changes the task)."""
    groups: dict[tuple[int, int], list[Mapping]] = {}
    for r in rows:
        groups.setdefault((r["image_size"], r["images"]), []).append(r)
    return {k: sorted(g, key=lambda r: r["passes"]) for k, g in sorted(groups.items())}


def _images(x: float, _pos=None) -> str:
    return f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k"


def plot_gap_budget(rows: Sequence[Mapping], *, live: str | None = None) -> Figure:
    """The gap-vs-budget figure: left, the plain-56 minus plain-20 gap in final training error (points)
    against the training images seen (log scale), one line per setting (:func:`settings`); right, the
    two nets' final training errors themselves, so a shrinking gap can be told from two nets that both
    approach zero. The row whose ``run`` is ``live`` is ringed ("your run"); partial runs are hollow."""
    fig, (ax_gap, ax_err) = plt.subplots(1, 2, figsize=(10.5, 3.9))
    for i, ((size, images), group) in enumerate(settings(rows).items()):
        color = SETTING_COLORS[i % len(SETTING_COLORS)]
        passes = [r["passes"] for r in group]
        ax_gap.plot(passes, [100 * r["gap"] for r in group], color=color, label=f"{size}×{size}, {images:,} images")
        for net, style in zip(PAIR, (":", "-")):
            ax_err.plot(passes, [100 * r["final"][net] for r in group], color=color, linestyle=style)
        for r in group:  # the markers: hollow for a partial run
            face = "white" if r["partial"] else color
            ax_gap.plot(r["passes"], 100 * r["gap"], "o", color=color, markerfacecolor=face)
            for net in PAIR:
                ax_err.plot(r["passes"], 100 * r["final"][net], "o", color=color, markerfacecolor=face)
            if r["run"] == live:
                ax_gap.plot(r["passes"], 100 * r["gap"], "o", markersize=14, markerfacecolor="none",
                            color="black", label="your run")
    ax_gap.axhline(0, color="grey", linewidth=0.8)
    ax_gap.set_ylabel("plain-56 minus plain-20 (points)")
    ax_gap.set_title("the degradation gap (colour: setting)")
    ax_err.set_ylabel("final training error (%)")
    ax_err.set_title("plain-20 (dotted) and plain-56 (solid)")
    for ax in (ax_gap, ax_err):
        ax.set_xscale("log")
        # 50k, 100k, 200k ...: a log axis over less than two decades has too few powers of ten to read
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(_images))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("training images seen (images × epochs)")
    ax_gap.legend(fontsize=8)
    fig.tight_layout()
    return fig
