"""Tables for the chapters, built from results dicts (never from typed numbers)."""

from __future__ import annotations

from typing import Any


def results_table(results: dict[str, dict[str, Any]], baseline: str = "supervised") -> str:
    """A Markdown table: best and last test accuracy of each run and the gain over the
    baseline's last accuracy, with the step and device that produced them."""
    base = results.get(baseline)
    key = next(iter(results.values())).get("metric", "acc")
    label = {"acc": "acc", "miou": "mIoU"}[key]
    rows = [f"| method | profile | steps | best {label} (step) | last {label} | gain over "
            f"{baseline} (last) | device |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        best, last = r["best"], r["last"]
        gain = (f"{100 * (last[key] - base['last'][key]):+.2f} pts"
                if base is not None and name != baseline else "")
        rows.append(f"| {name} | {r['profile']} | {r['config']['steps']} | "
                    f"{100 * best[key]:.2f}% ({best['step']}) | {100 * last[key]:.2f}% | "
                    f"{gain} | {r['device']} |")
    return "\n".join(rows)
