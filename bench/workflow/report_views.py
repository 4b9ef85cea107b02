"""Screenshots of a `snakemake --report` HTML file as a reader clicks through it, taken with
headless Chromium (Debian package `chromium`): the start page, every category's list, and every
result opened (its view and its info panel with the caption).

The report is a single-page app without addressable views, so each view is a copy of the report
with a script that sets the app's view once it has loaded.

    python bench/workflow/report_views.py results/report.html --out /tmp/report_views
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path


def report_object(html: str, name: str) -> dict:
    match = re.search(rf"var {name} = (\{{.*?\}});\n", html, re.S)
    if not match:
        raise SystemExit(f"no `{name}` in the report: is it a snakemake report?")
    return json.loads(match.group(1))


def views(html: str) -> dict[str, str]:
    """file stem -> javascript that opens that view."""
    results, categories = report_object(html, "results"), report_object(html, "categories")
    scripts = {"00_start": ""}
    for i, category in enumerate(sorted(categories)):
        scripts[f"1{i}_category_{slug(category)}"] = f"app.showCategory({json.dumps(category)});"
        for j, (subcategory, paths) in enumerate(sorted(categories[category].items())):
            for k, path in enumerate(paths[:2]):  # the first two items of each list
                result = results[path]
                kind = {"text/html": "html", "image/png": "img", "image/svg+xml": "img"}.get(result["mime_type"])
                if kind is None:
                    continue
                scripts[f"2{i}{j}{k}_{slug(path)}"] = (
                    f"app.setView({{navbarMode: 'resultinfo', resultPath: {json.dumps(path)},"
                    f" content: {json.dumps(kind)}, contentPath: results[{json.dumps(path)}].data_uri}});")
    return scripts


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:60]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG screenshots")
    parser.add_argument("--size", default="1600,1000", help="window width,height in pixels")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    html = args.report.read_text()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, script in views(html).items():
            page = Path(tmp) / f"{name}.html"
            hook = f"<script>window.addEventListener('load', () => setTimeout(() => {{{script}}}, 300));</script>"
            head, _, tail = html.rpartition("</body>")  # the page's own, not one inside its scripts
            page.write_text(head + hook + "</body>" + tail)
            subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            f"--window-size={args.size}", "--virtual-time-budget=8000",
                            f"--screenshot={args.out / (name + '.png')}", page.as_uri()],
                           check=True, capture_output=True)
            print(args.out / f"{name}.png")


if __name__ == "__main__":
    main()
