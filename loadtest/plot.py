"""Plot herald-loadtest results: mean throughput per scenario for Herald and
the Node.js baseline (bars: mean, whiskers: min and max), with the paper's
Node.js figures for the same shapes as reference lines.

    python3 loadtest/plot.py RESULTS.jsonl OUT.png

RESULTS.jsonl is what herald-loadtest appends to (--results). Needs
matplotlib (loadtest/requirements-plot.txt).
"""

import json
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# The paper's Node.js component (msg/s, mean): Table I and Table II.
PAPER = {"table1": 1485, "table2": 621}
COMPONENTS = ["herald", "baseline"]
COLOURS = {"herald": "#2b6cb0", "baseline": "#a0aec0"}


def load(path):
    runs = defaultdict(list)
    with open(path) as results:
        for line in results:
            run = json.loads(line)
            if run.get("error") is None and run.get("accuracy") == 1.0:
                # Prefilled runs time the component alone: a setup of their own.
                scenario = run["scenario"] + (" prefilled" if run.get("prefilled") else "")
                key = (scenario, run["server"], run["users"], run["component"])
                runs[key].append(run["throughput_msg_s"])
    return runs


def main(results_path, out_path):
    runs = load(results_path)
    setups = sorted({key[:3] for key in runs}, key=lambda s: (s[0], s[2]))
    fig, ax = plt.subplots(figsize=(10, 4.8))
    width = 0.38
    paper_labelled = False
    for i, setup in enumerate(setups):
        for j, component in enumerate(COMPONENTS):
            values = runs.get(setup + (component,))
            if not values:
                continue
            mean = sum(values) / len(values)
            x = i + (j - 0.5) * width
            ax.bar(x, mean, width, color=COLOURS[component],
                   label=component if i == 0 else None)
            ax.errorbar(x, mean, yerr=[[mean - min(values)], [max(values) - mean]],
                        fmt="none", ecolor="black", capsize=3)
        paper = PAPER.get(setup[0].split()[0])
        if paper:
            ax.hlines(paper, i - width, i + width, colors="#c53030", linestyles="dashed",
                      label=None if paper_labelled else "paper's Node.js")
            paper_labelled = True
    ax.set_xticks(range(len(setups)))
    ax.set_xticklabels([f"{s}\n{server}, {users:,} users" for s, server, users in setups])
    ax.set_ylabel("messages per second\n(first publish, or resume if prefilled, to last receipt)")
    ax.set_title("Herald and a Node.js baseline, same run, 2-core machine")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
