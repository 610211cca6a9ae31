"""Plot herald-loadtest results.

Left: mean throughput per scenario for Herald and the Node.js baseline
(bars: mean, whiskers: min and max), with the paper's Node.js figures for the
same shapes and, where `server-ceiling` runs of the same server, users and
churn are in the file, the server's own ceiling as reference lines.
Right, when the file has `scale` runs: throughput against logged-in users.

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
COLOURS = {"herald": "#2b6cb0", "baseline": "#a0aec0", "raw": "#2f855a"}
CEILING = "server-ceiling"


def load(path):
    """Throughputs of accurate runs by (scenario, server, users, churn, component)."""
    runs = defaultdict(list)
    with open(path) as results:
        for line in results:
            run = json.loads(line)
            if run.get("error") is None and run.get("accuracy") == 1.0:
                # Prefilled runs time the component alone: a setup of their own.
                scenario = run["scenario"] + (" prefilled" if run.get("prefilled") else "")
                key = (scenario, run["server"], run["users"], run.get("churn", 0),
                       run["component"])
                runs[key].append(run["throughput_msg_s"])
    return runs


def mean(values):
    return sum(values) / len(values)


def bars(ax, runs):
    setups = sorted({key[:4] for key in runs if key[0] not in (CEILING, "scale")},
                    key=lambda s: (s[0], s[2]))
    width = 0.38
    labelled = set()

    def once(label):
        if label in labelled:
            return None
        labelled.add(label)
        return label

    for i, setup in enumerate(setups):
        for j, component in enumerate(COMPONENTS):
            values = runs.get(setup + (component,))
            if not values:
                continue
            x = i + (j - 0.5) * width
            ax.bar(x, mean(values), width, color=COLOURS[component], label=once(component))
            ax.errorbar(x, mean(values),
                        yerr=[[mean(values) - min(values)], [max(values) - mean(values)]],
                        fmt="none", ecolor="black", capsize=3)
        paper = PAPER.get(setup[0].split()[0])
        if paper:
            ax.hlines(paper, i - width, i + width, colors="#c53030", linestyles="dashed",
                      label=once("paper's Node.js"))
        ceiling = runs.get((CEILING,) + setup[1:] + ("raw",))
        if ceiling:
            ax.hlines(mean(ceiling), i - width, i + width, colors=COLOURS["raw"],
                      linestyles="dotted", linewidth=2,
                      label=once("server's ceiling (a component that costs nothing)"))
    ax.set_xticks(range(len(setups)))
    ax.set_xticklabels([
        f"{s}\n{server}, {users:,} users" + (f"\n+ {churn:,} churning" if churn else "")
        for s, server, users, churn in setups
    ])
    ax.set_ylabel("messages per second\n(first publish, or resume if prefilled, to last receipt)")
    ax.set_title("Herald and a Node.js baseline, same run, 2-core machine")
    ax.legend(fontsize="small")


def scale(ax, runs):
    for component in COMPONENTS + ["raw"]:
        scenario = CEILING if component == "raw" else "scale"
        points = sorted((key[2], mean(values)) for key, values in runs.items()
                        if key[0] == scenario and key[1] == "prosody" and key[3] == 0
                        and key[4] == component)
        if len(points) < 2:
            continue
        label = "server's ceiling" if component == "raw" else component
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                color=COLOURS[component], label=label,
                linestyle="dotted" if component == "raw" else "solid")
    ax.set_xlabel("logged-in users (one job of one recipient each)")
    ax.set_ylabel("messages per second")
    ax.set_title("scale: throughput against users, Prosody")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")


def main(results_path, out_path):
    runs = load(results_path)
    has_scale = any(key[0] == "scale" for key in runs)
    if has_scale:
        fig, (left, right) = plt.subplots(1, 2, figsize=(15, 5.2),
                                          gridspec_kw={"width_ratios": [2.2, 1]})
        scale(right, runs)
    else:
        fig, left = plt.subplots(figsize=(10, 5.2))
    bars(left, runs)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
