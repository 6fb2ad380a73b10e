#!/usr/bin/env python3
"""Open a cffaudit HTML report in headless Chromium: check that it renders with its images.

Usage: python scripts/check_report_render.py REPORT.html [--screenshot OUT.png]

Two Chromium runs on a temporary copy of the report:
1. `--dump-dom` with a small probe script appended to the copy, which records after
   `load` how many <img> elements decoded (naturalWidth > 0) and how many tables exist;
2. `--screenshot` of the page, checked to be a non-blank PNG (look at it yourself).
The report itself carries no script; only the copy is probed. Exit status 0 when every
image loaded and the screenshot is not blank.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const p = document.createElement('pre');
  p.id = 'render-probe';
  p.textContent = 'PROBE images=' + ok + '/' + imgs.length + ' tables=' + document.querySelectorAll('table').length;
  document.body.appendChild(p);
});
</script>"""


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def chromium(binary: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="cffaudit-chromium-")
    try:
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               "--virtual-time-budget=5000", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--screenshot", type=Path, default=Path("report-screenshot.png"))
    ap.add_argument("--window", default="1200,3000", help="window size W,H (default 1200,3000)")
    args = ap.parse_args(argv)
    binary = chromium_binary()
    if binary is None:
        print("chromium not found (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    html = args.report.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        probe.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
        dom = chromium(binary, "--dump-dom", probe.as_uri()).stdout
    m = re.search(r"PROBE images=(\d+)/(\d+) tables=(\d+)", dom)
    if not m:
        print("the probe did not run: the page did not load", file=sys.stderr)
        return 1
    loaded, total, tables = map(int, m.groups())
    print(f"images loaded: {loaded}/{total}; tables: {tables}")
    res = chromium(binary, f"--screenshot={args.screenshot.resolve()}", f"--window-size={args.window}",
                   args.report.resolve().as_uri())
    if not args.screenshot.exists():
        print(f"no screenshot written: {res.stderr[-500:]}", file=sys.stderr)
        return 1
    import matplotlib.image as mpimg

    pixels = mpimg.imread(str(args.screenshot))
    blank = float(pixels[..., :3].std()) < 0.01
    print(f"screenshot: {args.screenshot} ({pixels.shape[1]}x{pixels.shape[0]}){' BLANK' if blank else ''}")
    return 0 if loaded == total and total > 0 and tables > 0 and not blank else 1


if __name__ == "__main__":
    sys.exit(main())
