"""Latency of the explorers' web views in Chromium: time from a slider move to the redrawn chart.

    .venv/bin/python benchmarks/web_view_latency.py [--moves 40] [--html _build/html]

Run after a book build. Each page of the built site that holds a web view is opened from
``file://`` in headless Chromium (``/usr/bin/chromium``, or ``STEPLAB_CHROMIUM``). For each
view, its first range slider (else its first control) is moved ``--moves`` times through
neighbouring values, as a hand drags it; each move is timed inside the page from setting the
input's value and dispatching ``input`` until Vega's dataflow has run and rendered
(``view.runAsync()``) and the browser has reached its next animation frame. Prints the median
and the 90th percentile per view.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_DRAG_JS = """async ([id, moves]) => {
    const el = document.getElementById(id);
    const view = el.vegaView;
    const ranges = [...el.querySelectorAll('input[type=range]')];
    const times = [];
    if (ranges.length) {
        const input = ranges[0];
        const lo = +input.min, hi = +input.max, step = +input.step;
        const n = Math.round((hi - lo) / step);
        let k = Math.round((+input.value - lo) / step), dir = 1;
        for (let i = 0; i < moves; ++i) {
            if (k + dir < 0 || k + dir > n) dir = -dir;
            k += dir;
            const t0 = performance.now();
            input.value = String(lo + k * step);
            input.dispatchEvent(new Event('input'));
            await view.runAsync();
            await new Promise(r => requestAnimationFrame(() => r()));
            times.push(performance.now() - t0);
        }
        return {control: input.name, times};
    }
    const radios = [...el.querySelectorAll('input[type=radio], select')];
    const first = radios[0];
    const group = first.tagName === 'SELECT' ? null : radios.filter(r => r.name === first.name);
    for (let i = 0; i < moves; ++i) {
        const t0 = performance.now();
        if (group) { const r = group[(i + 1) % group.length]; r.checked = true; r.dispatchEvent(new Event('change')); }
        else { first.selectedIndex = (i + 1) % first.options.length; first.dispatchEvent(new Event('change')); }
        await view.runAsync();
        await new Promise(r => requestAnimationFrame(() => r()));
        times.push(performance.now() - t0);
    }
    return {control: first.name, times};
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=40)
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    pages = sorted(p for p in args.html.rglob("*.html") if 'class="steplab-web-view"' in p.read_text(encoding="utf-8"))
    if not pages:
        raise SystemExit(f"no page with a web view under {args.html}: build the book first (make book)")
    exe = os.environ.get("STEPLAB_CHROMIUM", "/usr/bin/chromium")
    print(f"{'page':55s} {'view':18s} {'control':15s} {'median':>8s} {'p90':>8s}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        for path in pages:
            page.goto(path.as_uri(), wait_until="load")
            n = page.evaluate("() => document.querySelectorAll('.steplab-web-view').length")
            page.wait_for_function(
                "n => document.querySelectorAll('.steplab-web-view[data-rendered=\"true\"]').length >= n", arg=n, timeout=60_000
            )
            views = page.evaluate("() => [...document.querySelectorAll('.steplab-web-view')].map(e => [e.id, e.dataset.explorer])")
            for ident, name in views:
                out = page.evaluate(_DRAG_JS, [ident, args.moves])
                times = sorted(out["times"])
                p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
                rel = path.relative_to(args.html)
                print(f"{str(rel):55s} {name:18s} {out['control']:15s} {statistics.median(times):6.1f}ms {p90:6.1f}ms")
        browser.close()


if __name__ == "__main__":
    main()
