#!/usr/bin/env python3
"""Draws deploy/grafana/idminter.json as a PNG from a real Prometheus, for the README.

Grafana is not a Debian package, so the README's picture of the dashboard is drawn here instead:
every panel's own query (the expr in the dashboard JSON, with $__rate_interval replaced) is
evaluated by a Prometheus server over the range given, through its HTTP API (query_range), and
plotted with matplotlib in the dashboard's layout (gridPos), titles, units and legends. Nothing
is invented: a panel with no data is drawn empty.

    render.py --prometheus http://127.0.0.1:9099 --start 1700000000 --end 1700000600 \
        --out deploy/grafana/idminter.png

README.md ("Observability") says how the recorded run was made.
"""

import argparse
import json
import pathlib
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent


def query_range(prometheus, expr, start, end, step):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}") as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise SystemExit(f"{expr}: {body}")
    return body["data"]["result"]


def legend(fmt, labels):
    out = fmt
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out.strip() or "value"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--start", type=float, required=True)
    parser.add_argument("--end", type=float, required=True)
    parser.add_argument("--step", type=float, default=5)
    parser.add_argument("--rate-interval", default="30s")
    parser.add_argument("--dashboard", default=str(HERE / "idminter.json"))
    parser.add_argument("--out", default=str(HERE / "idminter.png"))
    args = parser.parse_args()

    dashboard = json.loads(pathlib.Path(args.dashboard).read_text())
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)

    plt.style.use("dark_background")
    scale = 0.62  # inches per grid unit (24 columns wide)
    fig = plt.figure(figsize=(24 * scale, rows * scale * 0.55), facecolor="#111217")
    fig.suptitle(
        f"{dashboard['title']} (Grafana dashboard deploy/grafana/idminter.json, "
        "drawn by deploy/grafana/render.py from a recorded run)",
        x=0.01, ha="left", fontsize=11, color="#ccccdc",
    )
    for panel in panels:
        g = panel["gridPos"]
        left, width = g["x"] / 24, g["w"] / 24
        bottom, height = 1 - (g["y"] + g["h"]) / rows, g["h"] / rows
        if panel["type"] == "row":
            fig.text(left + 0.005, bottom + height / 2 - 0.01, panel["title"], fontsize=12,
                     fontweight="bold", color="#ccccdc")
            continue
        ax = fig.add_axes([left + 0.03, bottom + 0.045, width - 0.045, height - 0.085],
                          facecolor="#181b1f")
        ax.set_title(panel["title"], loc="left", fontsize=10, color="#ccccdc")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        lines = 0
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", args.rate_interval)
            for series in query_range(args.prometheus, expr, args.start, args.end, args.step):
                xs = [(float(t) - args.start) / 60 for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                if unit == "percentunit":
                    ys = [y * 100 for y in ys]
                ax.plot(xs, ys, linewidth=1.2,
                        label=legend(target.get("legendFormat", ""), series["metric"]))
                lines += 1
        if lines == 0:
            ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", color="#888")
        elif lines <= 12:
            ax.legend(fontsize=6, loc="upper left", framealpha=0.3)
        ax.set_xlabel("minutes into the run", fontsize=7)
        ax.set_ylabel({"reqps": "calls/s", "s": "seconds", "percentunit": "%"}.get(unit, ""),
                      fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.15)
    fig.savefig(args.out, dpi=80, facecolor=fig.get_facecolor())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
