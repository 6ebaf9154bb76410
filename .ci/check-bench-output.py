#!/usr/bin/env python3
"""Checks that a `treuhand bench run` output folder is well formed.

Usage: check-bench-output.py DIR
Fails (exit 1) with a message if a file is missing, a row lacks a column, a number is not a
number, a row's repetition is outside 1..=repeats of the manifest (or a repetition has a
different number of rows than the first), no cell succeeded, or a plot is not an SVG.
With the nginx baseline (`baselines` in the manifest's config), nginx rows must have traffic,
summary.md must carry the ×nginx columns and ratio-vs-nginx.svg must exist; with pinning on,
every pinned process must have been seen on its CPU.
"""
import csv
import json
import pathlib
import sys

REQUIRED = [
    "scenario", "op", "object_size", "concurrency", "pacing", "cache_ttl_s", "threshold",
    "trustee_rtt_ms", "repeat", "requests_ok", "errors", "duration_s", "ops_per_s", "mib_per_s",
    "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "proxy_cpu_s", "proxy_peak_rss_mib",
    "gen_lag_p99_ms",
]


def fail(message):
    print(f"check-bench-output: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 2:
        fail("usage: check-bench-output.py DIR")
    out = pathlib.Path(sys.argv[1])
    for name in ["results.csv", "results.json", "manifest.json", "summary.md"]:
        if not (out / name).is_file():
            fail(f"{out / name} is missing")
    rows = json.loads((out / "results.json").read_text())
    if not isinstance(rows, list) or not rows:
        fail("results.json has no rows")
    with open(out / "results.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    if len(csv_rows) != len(rows):
        fail(f"results.csv has {len(csv_rows)} rows, results.json {len(rows)}")
    for i, row in enumerate(csv_rows):
        for column in REQUIRED:
            if column not in row:
                fail(f"results.csv row {i} lacks column {column}")
        for column in ["ops_per_s", "p50_ms", "p99_ms", "max_ms"]:
            float(row[column])
        if float(row["p50_ms"]) > float(row["max_ms"]) + 1e-9:
            fail(f"row {i}: p50 above max")
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ["git_commit", "machine", "config", "seed", "repeats", "rustc", "dependencies",
                "cpu_stability", "pinning"]:
        if key not in manifest:
            fail(f"manifest.json lacks {key}")
    repeats = manifest["repeats"]
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        fail(f"manifest.json: repeats must be a positive integer, not {repeats!r}")
    for i, (row, csv_row) in enumerate(zip(rows, csv_rows)):
        if "repeat" not in row:
            fail(f"results.json row {i} lacks repeat")
        if str(row["repeat"]) != csv_row["repeat"]:
            fail(f"row {i}: repeat {row['repeat']} in results.json, {csv_row['repeat']} in results.csv")
        if not isinstance(row["repeat"], int) or not 1 <= row["repeat"] <= repeats:
            fail(f"row {i}: repeat {row['repeat']!r} is outside 1..={repeats}")
    # Every repetition runs the same variants and cells, so each has as many rows.
    per_repeat = [sum(1 for r in rows if r["repeat"] == n) for n in range(1, repeats + 1)]
    if len(set(per_repeat)) != 1:
        fail(f"rows per repetition differ: {per_repeat}")
    ok = [r for r in rows if r["requests_ok"] > 0]
    if not ok:
        fail("no cell completed a single request")
    scenarios = {r["scenario"] for r in ok}
    # Every scenario the sweep asked for must have worked, except `direct`, which the harness
    # skips (with a message) when no backend endpoint is given.
    configured = manifest.get("config", {}).get("scenarios") or ["passthrough", "treuhand"]
    for wanted in [s for s in configured if s != "direct"]:
        if wanted not in scenarios:
            fail(f"no successful cell for scenario {wanted}")
    baselines = manifest.get("config", {}).get("baselines") or []
    for wanted in baselines:
        if wanted not in scenarios:
            fail(f"no successful cell for baseline {wanted}")
    if "nginx" in baselines:
        if not str(manifest.get("nginx") or "").startswith("nginx/"):
            fail(f"manifest.json: nginx version missing ({manifest.get('nginx')!r})")
        summary = (out / "summary.md").read_text()
        if "| ×nginx tput | p50 ×nginx |" not in summary:
            fail("summary.md lacks the ×nginx columns")
        if not (out / "ratio-vs-nginx.svg").is_file():
            fail("ratio-vs-nginx.svg is missing")
    pinning = manifest["pinning"]
    if pinning.get("enabled"):
        client, system = str(pinning["client_cpu"]), str(pinning["system_cpu"])
        for role, seen in pinning["observed"].items():
            want = client if role == "load generator" else system
            if seen != [want]:
                fail(f"pinning: {role} was seen on CPUs {seen}, not [{want}]")
    svgs = list(out.glob("*.svg"))
    if not svgs:
        fail("no SVG plots written")
    for svg in svgs:
        if "<svg" not in svg.read_text()[:2000]:
            fail(f"{svg} is not an SVG")
    errors = sum(r["errors"] for r in rows)
    print(f"check-bench-output: ok: {len(rows)} rows ({repeats} repetition(s) of {per_repeat[0]}), "
          f"{len(ok)} with traffic, {errors} failed requests, "
          f"{len(svgs)} plots, scenarios {sorted(scenarios)}, "
          f"pinning {'on' if pinning.get('enabled') else 'off'}")


if __name__ == "__main__":
    main()
