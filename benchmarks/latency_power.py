"""Power and false-alarm rate of ``regression_verdict`` by simulation.

Latencies are drawn from a lognormal (median 1 s, shape ``--sigma``) for the reference and the
same distribution scaled by a true ratio (1.0 = no regression, 1.1, 1.2) for the candidate. For
each statistic, sample size and true ratio the script runs ``--reps`` independent experiments
and reports how often the verdict is ``fail`` / ``pass`` / ``inconclusive``:

* true ratio 1.00: P(fail) is the false-alarm rate;
* true ratio 1.20 (above ``--max-ratio`` 1.10): P(fail) is the power to catch the regression;
* true ratio 1.10 (exactly at the threshold): by design P(fail) stays at or below ~2.5 %.

    python benchmarks/latency_power.py --quick      # < 60 s on 2 cores
    python benchmarks/latency_power.py              # the fuller grid
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pytest_engineparity.checks.stats import default_min_samples, regression_verdict  # noqa: E402

__all__ = ["Cell", "CellResult", "simulate_cell", "main"]


@dataclass(frozen=True)
class Cell:
    stat: str
    n: int
    true_ratio: float
    sigma: float
    reps: int
    n_resamples: int
    max_ratio: float
    seed: int


@dataclass(frozen=True)
class CellResult:
    cell: Cell
    fail: float
    passed: float
    inconclusive: float
    median_ci_width: Optional[float]  # high - low, ratio units; None when no CI was computed
    median_more: Optional[float]  # median "need about N more samples" among inconclusive runs
    seconds: float


def simulate_cell(cell: Cell) -> CellResult:
    """Run ``cell.reps`` independent experiments for one (stat, n, true ratio)."""
    t0 = time.perf_counter()
    counts = {"fail": 0, "pass": 0, "inconclusive": 0}
    widths: list[float] = []
    more: list[int] = []
    ss = np.random.SeedSequence([cell.seed, cell.n, int(cell.true_ratio * 1000), int(cell.sigma * 1000),
                                 sum(map(ord, cell.stat))])
    for rep, child in enumerate(ss.spawn(cell.reps)):
        rng = np.random.default_rng(child)
        ref = rng.lognormal(0.0, cell.sigma, cell.n)
        cand = rng.lognormal(math.log(cell.true_ratio), cell.sigma, cell.n)
        v = regression_verdict(ref, cand, cell.stat, max_ratio=cell.max_ratio,
                               n_resamples=cell.n_resamples, seed=rep)
        counts[v.verdict] += 1
        if v.ci is not None:
            widths.append(v.ci.high - v.ci.low)
        if v.verdict == "inconclusive" and v.more_samples_needed is not None:
            more.append(v.more_samples_needed)
    r = cell.reps
    return CellResult(cell=cell, fail=counts["fail"] / r, passed=counts["pass"] / r,
                      inconclusive=counts["inconclusive"] / r,
                      median_ci_width=float(np.median(widths)) if widths else None,
                      median_more=float(np.median(more)) if more else None,
                      seconds=time.perf_counter() - t0)


def _table(results: list[CellResult], max_ratio: float) -> list[str]:
    head = (f"{'stat':<5} {'n/engine':>8} {'true ratio':>10} {'P(fail)':>8} {'P(pass)':>8} "
            f"{'P(inconcl)':>10} {'CI width':>9} {'median more':>11}  meaning")
    lines = [head, "-" * len(head)]
    prev = None
    for res in results:
        c = res.cell
        if prev is not None and (c.stat, c.n) != prev:
            lines.append("")
        prev = (c.stat, c.n)
        if c.true_ratio == 1.0:
            meaning = "false-alarm rate"
        elif c.true_ratio > max_ratio + 1e-9:
            meaning = f"power vs a {round((c.true_ratio - 1) * 100)}% regression"
        else:
            meaning = f"{round((c.true_ratio - 1) * 100)}% regression, at the {max_ratio:.2f} threshold"
        if c.n < default_min_samples(c.stat):
            meaning += f" (n < {default_min_samples(c.stat)}: always inconclusive)"
        w = f"{res.median_ci_width:.3f}" if res.median_ci_width is not None else "-"
        m = f"{res.median_more:.0f}" if res.median_more is not None else "-"
        lines.append(f"{c.stat:<5} {c.n:>8} {c.true_ratio:>10.2f} {res.fail:>8.3f} {res.passed:>8.3f} "
                     f"{res.inconclusive:>10.3f} {w:>9} {m:>11}  {meaning}")
    return lines


def _one_run(stats: list[str], n: int, ratios: list[float], sigma: float, max_ratio: float,
             n_resamples: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    ref = rng.lognormal(0.0, sigma, n)
    lines = [f"one run, n={n} per engine, sigma={sigma}, {n_resamples} resamples:"]
    for ratio in ratios:
        cand = np.random.default_rng(seed + 1).lognormal(math.log(ratio), sigma, n)
        for stat in stats:
            v = regression_verdict(ref, cand, stat, max_ratio=max_ratio, n_resamples=n_resamples)
            lines.append(f"  true {ratio:.2f}  {v.verdict:<12} {v.message}")
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small grid, fewer reps and resamples (< 60 s)")
    p.add_argument("--sigma", type=float, default=None, metavar="S",
                   help="lognormal shape of the latencies (default 0.2; quick: 0.2)")
    p.add_argument("--max-ratio", type=float, default=1.10, metavar="R", help="allowed ratio (default 1.10)")
    p.add_argument("--reps", type=int, default=None, metavar="N", help="experiments per cell (default 400; quick 150)")
    p.add_argument("--resamples", type=int, default=None, metavar="B",
                   help="bootstrap resamples per verdict (default 2000; quick 400)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="W",
                   help="processes (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    sigma = a.sigma if a.sigma is not None else 0.2
    reps = a.reps or (150 if a.quick else 400)
    resamples = a.resamples or (400 if a.quick else 2000)
    sizes = [100, 300, 1000] if a.quick else [50, 100, 300, 1000, 3000]
    ratios = [1.0, 1.1, 1.2]
    stats = ["p50", "p99"]
    cells = [Cell(s, n, r, sigma, reps, resamples, a.max_ratio, a.seed)
             for s in stats for n in sizes for r in ratios]

    t0 = time.perf_counter()
    if a.workers > 1:
        # largest cells first so the pool stays busy
        order = sorted(range(len(cells)), key=lambda i: -cells[i].n)
        with ProcessPoolExecutor(max_workers=a.workers) as ex:
            done = dict(zip(order, ex.map(simulate_cell, [cells[i] for i in order])))
        results = [done[i] for i in range(len(cells))]
    else:
        results = [simulate_cell(c) for c in cells]
    elapsed = time.perf_counter() - t0

    print(f"regression_verdict power / false alarms: lognormal sigma={sigma}, max_ratio={a.max_ratio}, "
          f"{reps} experiments per row, {resamples} bootstrap resamples, 95% CI")
    print("\n".join(_table(results, a.max_ratio)))
    print()
    print("\n".join(_one_run(stats, max(sizes), ratios, sigma, a.max_ratio, 2000, a.seed)))
    print(f"\nsimulation took {elapsed:.1f}s on {a.workers} worker(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
