"""Turn raw worker results into statistics, a markdown table, JSON and a PNG chart."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from ._spec import (
    BASELINE,
    CONTENDERS,
    CONTENDERS_BY_NAME,
    WORKLOADS,
    WORKLOADS_BY_NAME,
    Mode,
    Workload,
)

Result = dict[str, Any]


@dataclass
class Summary:
    """One (workload, TLS version, contender) cell: its values over rounds and its ratios."""

    workload: str
    tls: str
    contender: str
    n: int
    median: float
    min: float
    max: float
    #: Quartiles over rounds (equal to min/max below 4 rounds).
    q1: float
    q3: float
    #: value / trio.SSLStream's value in the same round, for each round where both ran.
    ratios: list[float] = field(default_factory=list)
    ratio_median: float | None = None
    ratio_min: float | None = None
    ratio_max: float | None = None
    #: Median of each extra number the workload reports (e.g. py_heap_kib for memory).
    extra_median: dict[str, float] = field(default_factory=dict)


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 4:
        return min(values), max(values)
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q1, q3


def summarize(results: Iterable[Result]) -> list[Summary]:
    """Group successful results by cell and compute medians, spread and per-round ratios."""
    ok = [r for r in results if r.get("ok")]
    by_cell: dict[tuple[str, str, str], list[Result]] = {}
    for result in ok:
        by_cell.setdefault((result["workload"], result["tls"], result["contender"]), []).append(
            result
        )
    baseline_by_round = {
        (r["workload"], r["tls"], r["round"]): float(r["value"])
        for r in ok
        if r["contender"] == BASELINE
    }
    summaries = []
    for (workload, tls, contender), cell in by_cell.items():
        values = [float(r["value"]) for r in cell]
        q1, q3 = _quartiles(values)
        ratios = [
            float(r["value"]) / baseline_by_round[(workload, tls, r["round"])]
            for r in sorted(cell, key=lambda r: int(r["round"]))
            if baseline_by_round.get((workload, tls, r["round"]))
        ]
        extra_keys = {key for r in cell for key in r.get("extra", {})}
        summaries.append(
            Summary(
                workload=workload,
                tls=tls,
                contender=contender,
                n=len(values),
                median=statistics.median(values),
                min=min(values),
                max=max(values),
                q1=q1,
                q3=q3,
                ratios=ratios,
                ratio_median=statistics.median(ratios) if ratios else None,
                ratio_min=min(ratios) if ratios else None,
                ratio_max=max(ratios) if ratios else None,
                extra_median={
                    key: statistics.median(
                        float(r["extra"][key]) for r in cell if key in r["extra"]
                    )
                    for key in sorted(extra_keys)
                },
            )
        )
    return sorted(summaries, key=_order)


def _order(s: Summary) -> tuple[int, str, int]:
    workload_index = [w.name for w in WORKLOADS].index(s.workload)
    contender_index = list(CONTENDERS_BY_NAME).index(s.contender)
    return workload_index, s.tls, contender_index


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(s: Summary) -> tuple[str, str]:
    if s.ratio_median is None or s.ratio_min is None or s.ratio_max is None:
        return "-", "-"
    return f"{s.ratio_median:.2f}x", f"{s.ratio_min:.2f}-{s.ratio_max:.2f}"


def _notes(s: Summary) -> str:
    if "py_heap_kib" in s.extra_median:
        return f"Python heap {s.extra_median['py_heap_kib']:.1f} KiB/conn"
    return ""


def table(summaries: Sequence[Summary], ceiling: dict[str, Any]) -> str:
    """A markdown table per TLS version; readable in a terminal and pasteable into notes."""
    lines: list[str] = []
    baseline = CONTENDERS_BY_NAME[BASELINE].label
    for tls in sorted({s.tls for s in summaries}, reverse=True):
        lines += [
            f"### TLS {tls}",
            "",
            f"| workload | contender | median | min-max | vs {baseline} | ratio min-max | n | notes |",
            "|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for s in (s for s in summaries if s.tls == tls):
            workload = WORKLOADS_BY_NAME[s.workload]
            direction = "↑" if workload.higher_is_better else "↓"
            ratio, spread = _ratio(s)
            lines.append(
                f"| {s.workload} ({workload.unit} {direction}) "
                f"| {CONTENDERS_BY_NAME[s.contender].label} | {_number(s.median)} "
                f"| {_number(s.min)}-{_number(s.max)} | {ratio} | {spread} | {s.n} | {_notes(s)} |"
            )
        lines.append("")
    if ceiling.get("mb_s"):
        lines.append(
            f"Crypto ceiling: `openssl speed -evp aes-256-gcm` = {ceiling['mb_s']:,.0f} MB/s on one"
            f" core (16 KiB blocks); a single process that encrypts and decrypts every byte is"
            f" bounded by half of that, {ceiling['mb_s'] / 2:,.0f} MB/s."
        )
    elif ceiling.get("note"):
        lines.append(f"Crypto ceiling: {ceiling['note']}")
    return "\n".join(lines)


#: The two ceilings a trio_tls figure is set against, measured in the same run: the
#: trio stack with no TLS at all, and trio_tls's own engine and socket path with no driver.
CEILINGS: Final = ("trio_tcp", "trio_tls_engine")

#: The contender whose figures :func:`against_ceilings` explains.
SUBJECT: Final = "trio_tls"


def _round_ratios(
    results: Iterable[Result], workload: str, tls: str, a: str, b: str
) -> list[float]:
    values: dict[tuple[str, int], float] = {
        (r["contender"], r["round"]): float(r["value"])
        for r in results
        if r.get("ok") and r["workload"] == workload and r["tls"] == tls
    }
    rounds = sorted({n for (_, n) in values})
    return [
        values[(a, n)] / values[(b, n)] for n in rounds if (a, n) in values and (b, n) in values
    ]


def _median_ratio(
    results: Sequence[Result], workload: str, tls: str, a: str, b: str
) -> float | None:
    ratios = _round_ratios(results, workload, tls, a, b)
    return statistics.median(ratios) if ratios else None


def _share(results: Sequence[Result], workload: Workload, tls: str, ceiling: str) -> str:
    """How much of *ceiling*'s figure trio_tls reaches: 100% is as good as the ceiling."""
    # For memory, less is better: the share is the ceiling's size over trio_tls's.
    a, b = (SUBJECT, ceiling) if workload.higher_is_better else (ceiling, SUBJECT)
    ratio = _median_ratio(results, workload.name, tls, a, b)
    return "-" if ratio is None else f"{ratio:.0%}"


def against_ceilings(results: Sequence[Result], mode: Mode) -> str:
    """trio_tls's figures as ratios to trio.SSLStream and as shares of its two ceilings.

    Each number is the median, over rounds, of a ratio taken within one round, so
    the machine's drift between rounds cancels out. Empty if trio_tls did not run.
    """
    if not any(r.get("ok") and r["contender"] == SUBJECT for r in results):
        return ""
    subject = CONTENDERS_BY_NAME[SUBJECT].label
    baseline = CONTENDERS_BY_NAME[BASELINE].label
    header = f"| workload | vs {baseline} | " + " | ".join(
        f"share of {CONTENDERS_BY_NAME[c].label}" for c in CEILINGS
    )
    lines: list[str] = []
    for tls in sorted({r["tls"] for r in results}, reverse=True):
        lines += [f"### {subject} against {baseline} and its ceilings, TLS {tls}", ""]
        if mode is Mode.QUICK:
            lines += [
                "Quick mode, small sizes: these ratios are a smoke test, not a measurement"
                " (measure with --full).",
                "",
            ]
        lines += [header + " |", "|---|---:|" + "---:|" * len(CEILINGS)]
        for workload in WORKLOADS:
            ratio = _median_ratio(results, workload.name, tls, SUBJECT, BASELINE)
            shares = [_share(results, workload, tls, c) for c in CEILINGS]
            if ratio is None and all(share == "-" for share in shares):
                continue
            direction = "↑" if workload.higher_is_better else "↓"
            cells = ["-" if ratio is None else f"{ratio:.2f}x", *shares]
            lines.append(
                f"| {workload.name} ({workload.unit} {direction}) | " + " | ".join(cells) + " |"
            )
        lines.append("")
    lines += [
        "Each figure is the median over rounds of a ratio taken within one round.",
        f"'vs {baseline}' is {subject}'s figure over {baseline}'s (for ↓ rows, lower is better).",
        f"A share is how much of a ceiling's figure {subject} reaches (for ↓ rows, the",
        "ceiling's figure over its own), so 100% means as good as that ceiling.",
    ]
    return "\n".join(lines)


def chooser_cost(results: Sequence[Result]) -> str:
    """trio_tls with a warm ContextCache chooser over trio_tls with a fixed context.

    Per TLS version and workload both ran: the median of the per-round ratios and
    their range. Empty unless both contenders ran.
    """
    lines = []
    for tls in sorted({r["tls"] for r in results}, reverse=True):
        for workload in WORKLOADS:
            ratios = _round_ratios(results, workload.name, tls, "trio_tls_chooser", SUBJECT)
            if ratios:
                lines.append(
                    f"| {workload.name} | TLS {tls} | {statistics.median(ratios):.3f}x"
                    f" | {min(ratios):.3f}-{max(ratios):.3f} | {len(ratios)} |"
                )
    if not lines:
        return ""
    head = "### On-demand TLS: a warm ContextCache over a fixed context (trio_tls)"
    columns = "| workload | version | median of per-round ratios | min-max | rounds |"
    return "\n".join([head, "", columns, "|---|---|---:|---:|---:|", *lines])


#: Wide enough for every name and label, so that the progress values form one column.
_WORKLOAD_WIDTH: Final = max(len(w.name) for w in WORKLOADS)
_LABEL_WIDTH: Final = max(len(c.label) for c in CONTENDERS)


def progress(index: int, total: int, result: Result, seconds: float, who: str | None = None) -> str:
    """One line saying which run finished and what it measured (or why it failed).

    ``who`` names the runner when the contender's label does not (an A/B side).
    """
    workload = WORKLOADS_BY_NAME[result["workload"]]
    label = who if who is not None else CONTENDERS_BY_NAME[result["contender"]].label
    if result.get("ok"):
        outcome = f"{result['value']:>12,.1f} {workload.unit}"
    else:
        outcome = f"FAILED: {result.get('error')}"
    return (
        f"[{index:>{len(str(total))}}/{total}] r{result['round'] + 1} TLS {result['tls']}"
        f" {workload.name:<{_WORKLOAD_WIDTH}} {label:<{_LABEL_WIDTH}} {outcome} ({seconds:.1f} s)"
    )


def write_json(path: Path, report: dict[str, Any], summaries: Sequence[Summary]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {**report, "summary": [asdict(s) for s in summaries]}
    path.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")


#: The chart's x axis starts here: smaller ratios (plain TCP's memory) are drawn clipped.
_CHART_MIN_RATIO: Final = 0.1


def write_png(path: Path, summaries: Sequence[Summary], title: str) -> str | None:
    """Draw ratio-to-baseline bars per workload and TLS version; return a note if impossible."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return "matplotlib is not installed (pip install 'trio_tls[bench]'): no chart drawn"
    with_ratio = [s for s in summaries if s.ratio_median is not None]
    if not with_ratio:
        return "no ratios to draw (trio.SSLStream did not run)"
    tls_versions = sorted({s.tls for s in with_ratio}, reverse=True)
    workloads = [w for w in WORKLOADS if any(s.workload == w.name for s in with_ratio)]
    names = list(CONTENDERS_BY_NAME)
    contenders = [c for c in names if any(s.contender == c for s in with_ratio)]
    height = 0.8 / len(contenders)
    figure, axes = plt.subplots(
        1,
        len(tls_versions),
        figsize=(5.5 * len(tls_versions), 1.6 + 0.75 * len(workloads)),
        squeeze=False,
        sharey=True,
    )
    colors = plt.get_cmap("tab10")
    for ax, tls in zip(axes[0], tls_versions, strict=True):
        for ci, contender in enumerate(contenders):
            cells = {s.workload: s for s in with_ratio if s.tls == tls and s.contender == contender}
            for wi, workload in enumerate(workloads):
                s = cells.get(workload.name)
                if s is None or s.ratio_median is None:
                    continue
                y = wi - 0.4 + (ci + 0.5) * height
                x = max(s.ratio_median, _CHART_MIN_RATIO)
                low = max(s.ratio_min or x, _CHART_MIN_RATIO)
                ax.barh(
                    y,
                    x,
                    height=height,
                    color=colors(names.index(contender) % 10),
                    xerr=[[x - low], [max((s.ratio_max or x) - x, 0.0)]],
                    error_kw={"linewidth": 0.6},
                    label=contender if wi == 0 else None,
                )
                # Right of the error bar, so the number never sits on the whisker.
                label_x = max(x, s.ratio_max or x) * 1.05
                ax.text(label_x, y, f"{s.ratio_median:.2f}", va="center", fontsize=5)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        widest = max((s.ratio_max or 1.0) for s in with_ratio)
        ax.set_xlim(_CHART_MIN_RATIO, max(widest, 1.0) * 1.8)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_title(f"TLS {tls}", fontsize=9)
        ax.set_xlabel("ratio to trio.SSLStream (median; bars: min-max over rounds)", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_yticks(range(len(workloads)))
        ax.set_yticklabels(
            [
                f"{w.name}\n({'higher' if w.higher_is_better else 'lower'} is better)"
                for w in workloads
            ],
            fontsize=7,
        )
    # Once only: the y axis is shared, so inverting it per subplot would undo itself.
    axes[0][0].invert_yaxis()
    handles, labels = axes[0][0].get_legend_handles_labels()
    columns = 2 * len(tls_versions)
    figure.legend(
        handles,
        [CONTENDERS_BY_NAME[n].label for n in labels],
        loc="lower center",
        ncol=columns,
        fontsize=7,
        frameon=False,
    )
    figure.suptitle(title, fontsize=9)
    legend_rows = -(-len(labels) // columns)
    figure.tight_layout(rect=(0, 0.025 * legend_rows + 0.01, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return None
