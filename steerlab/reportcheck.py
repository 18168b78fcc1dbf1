"""Load a steerlab report in a real headless browser and say what does not work.

A report page must load with no errors, show every figure at a non-zero size, give every
audio player a source the browser can play, and never be wider than the window (wide
tables scroll in their own box). Reading the HTML cannot prove any of that; a browser can.
:func:`check_report` copies the page with a small script added at the top of its
``<head>`` (check mode only: the report itself holds no script), runs Chromium headless
(``--dump-dom`` with a virtual time budget, so media metadata loads without real waiting)
and reads back the JSON the script wrote into ``<pre id=steerlab-report-check>``. The
script counts uncaught errors, ``console.error`` calls and failed resource loads; checks
each ``<img>`` (decoded, ``naturalWidth > 0``, laid out at a non-zero size), each
``<svg>`` (non-zero bounding box) and each ``<audio>`` (a ``<source>`` of declared type the
browser says it can play, ``canPlayType``, whose metadata loads with a duration > 0); and
compares the page's scroll width with the window's. :func:`screenshot` renders a page to a
PNG (the docs' pictures of each report kind). Chromium is Debian's ``chromium`` package
(``apt-get install chromium``) or any Chrome found on PATH; ``STEERLAB_CHROMIUM`` names
another. Run as ``python -m steerlab.reportcheck REPORT.html [--screenshot PNG]``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steerlab.errors import BrowserNotFound, OutputError, SteerlabError

CHECK_ID = "steerlab-report-check"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio")

# Runs before the page's body is parsed: error and media events are caught (capture phase, on
# window, so events that do not bubble are seen) from the first element on; at "load" it
# waits for every player to load its metadata or fail, then writes its findings as JSON.
_SCRIPT = """<script>(function(){
var errors=[],media=new WeakMap();
function seen(e){var t=e.target;if(t&&t!==window&&t.tagName){if(t.tagName==='SOURCE'&&t.parentNode){t=t.parentNode}
 if(t.tagName==='AUDIO'||t.tagName==='VIDEO'){media.set(t,e.type);if(e.type!=='error')return}
 errors.push('failed to load '+e.target.tagName.toLowerCase()+' '+String(e.target.src||'').slice(0,60))}
 else{errors.push(String(e.message||e.type))}}
window.addEventListener('error',seen,true);window.addEventListener('loadedmetadata',seen,true);
window.addEventListener('unhandledrejection',function(e){errors.push('unhandled rejection: '+e.reason)});
var ce=console.error;console.error=function(){errors.push(Array.prototype.join.call(arguments,' '));ce.apply(console,arguments)};
function box(el){var r=el.getBoundingClientRect();return [Math.round(r.width),Math.round(r.height)]}
function report(timedOut){if(document.getElementById('%(id)s'))return;
 var audio=Array.prototype.map.call(document.querySelectorAll('audio'),function(a){
  var s=a.querySelector('source'),type=s?s.getAttribute('type')||'':'',src=s?s.getAttribute('src')||'':a.getAttribute('src')||'';
  return {type:type,has_source:!!src,can_play:type?a.canPlayType(type):'',event:media.get(a)||null,
   ready:a.readyState,network:a.networkState,duration:isFinite(a.duration)?a.duration:null}});
 var out={errors:errors,timed_out:!!timedOut,audio:audio,
  images:Array.prototype.map.call(document.images,function(i){return {alt:i.alt,complete:i.complete,
   natural:[i.naturalWidth,i.naturalHeight],box:box(i)}}),
  svgs:Array.prototype.map.call(document.querySelectorAll('svg'),function(s){return {box:box(s)}}),
  page_width:document.documentElement.scrollWidth,window_width:window.innerWidth};
 var pre=document.createElement('pre');pre.id='%(id)s';pre.textContent=JSON.stringify(out);document.body.appendChild(pre)}
function settled(a){return media.has(a)||a.readyState>=1||a.networkState===3}
window.addEventListener('load',function(){
 var players=Array.prototype.slice.call(document.querySelectorAll('audio'));
 (function poll(n){if(players.every(settled)){report(false)}else if(n>200){report(true)}else{setTimeout(function(){poll(n+1)},50)}})(0);
});})();</script>""".replace("%(id)s", CHECK_ID)


@dataclass
class ReportCheck:
    """What a headless browser found on one report page; ``problems`` empty means it passed."""

    path: Path
    problems: list[str] = field(default_factory=list)
    images: int = 0
    svgs: int = 0
    players: int = 0
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        head = f"{self.path}: {self.images} images, {self.svgs} SVGs, {self.players} audio players"
        return head + (": OK" if self.ok else "".join(f"\n  - {p}" for p in self.problems))


def find_browser() -> str | None:
    """The Chromium (or Chrome) executable to use, or None: ``STEERLAB_CHROMIUM``, else PATH."""
    named = os.environ.get("STEERLAB_CHROMIUM")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    return next((p for p in (shutil.which(b) for b in BROWSERS) if p), None)


def _browser(browser: str | None) -> str:
    found = browser or find_browser()
    if not found:
        raise BrowserNotFound(
            "no Chromium to load the report with: install Debian's chromium (apt-get install chromium) "
            "or set STEERLAB_CHROMIUM to a Chrome executable"
        )
    return found


def _run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="steerlab-chromium-") as profile:
        try:
            return subprocess.run(
                [*args[:1], *FLAGS, f"--user-data-dir={profile}", *args[1:]],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise OutputError(f"the browser did not finish within {timeout_s:g} s: {' '.join(args[:1])}") from None


def with_check_script(page: str) -> str:
    """The page with the check script first in its ``<head>`` (or first of all, without one)."""
    m = re.search(r"<head[^>]*>", page, flags=re.IGNORECASE)
    return page[: m.end()] + _SCRIPT + page[m.end() :] if m else _SCRIPT + page


_HTML_START = re.compile(r"\s*(<!--.*?-->\s*)*<(!doctype\s+html|html)[\s>]", flags=re.IGNORECASE | re.DOTALL)


def read_page(path: Path) -> str:
    """The text of the HTML page at ``path``. Raises :class:`OutputError` (one line) for a missing
    file, or for one that is not an HTML page (not UTF-8, or not opening with ``<!doctype html>``
    or ``<html>``): a browser shows any file as something, so a WAV or a JSON file would otherwise
    pass as a page with nothing in it."""
    if not path.is_file():
        raise OutputError(f"no report page at {str(path)!r}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = None
    except OSError as exc:
        raise OutputError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if text is None or not _HTML_START.match(text):
        raise OutputError(
            f"{str(path)!r} is not an HTML page (a report opens with <!doctype html>); give a report's .html file"
        )
    return text


def check_report(
    path: str | Path, browser: str | None = None, width: int = 1280, height: int = 2000, timeout_s: float = 120.0
) -> ReportCheck:
    """Load the report page at ``path`` in headless Chromium (a ``width`` x ``height`` window) and
    return what fails (:class:`ReportCheck`). Raises :class:`BrowserNotFound` without a browser,
    :class:`steerlab.errors.OutputError` for a missing file, a file that is not an HTML page
    (:func:`read_page`) or a browser that does not answer."""
    path = Path(path)
    page = read_page(path)
    exe = _browser(browser)
    with tempfile.TemporaryDirectory(prefix="steerlab-reportcheck-") as tmp:
        copy = Path(tmp) / "page.html"  # beside nothing: a self-contained page needs no neighbours
        copy.write_text(with_check_script(page), encoding="utf-8")
        done = _run(
            [exe, f"--window-size={width},{height}", "--virtual-time-budget=30000", "--dump-dom", copy.as_uri()],
            timeout_s,
        )
    return _read(path, done.stdout, done.stderr)


def _read(path: Path, dom: str, stderr: str) -> ReportCheck:
    m = re.search(rf'<pre id="{CHECK_ID}">(.*?)</pre>', dom, flags=re.DOTALL)
    if not m:
        tail = stderr.strip().splitlines()[-1:] if stderr.strip() else ["no output"]
        return ReportCheck(path, [f"the page never finished loading in the browser ({tail[0][:200]})"])
    import html

    raw = json.loads(html.unescape(m.group(1)))
    problems = [f"page error: {e}" for e in raw["errors"]]
    for i, im in enumerate(raw["images"]):
        if not im["complete"] or min(im["natural"]) <= 0:
            problems.append(f"image {i + 1} ({im['alt'] or 'no alt'}) did not decode")
        elif min(im["box"]) <= 0:
            problems.append(f"image {i + 1} ({im['alt'] or 'no alt'}) is laid out at zero size")
    for i, s in enumerate(raw["svgs"]):
        if min(s["box"]) <= 0:
            problems.append(f"SVG {i + 1} has a zero-size bounding box")
    for i, a in enumerate(raw["audio"]):
        what = f"audio player {i + 1}"
        if not a["has_source"]:
            problems.append(f"{what} has no source")
        elif not a["type"]:
            problems.append(f"{what}: its source declares no type")
        elif not a["can_play"]:
            problems.append(f"{what}: the browser cannot play {a['type']}")
        elif a["event"] != "loadedmetadata" and a["ready"] < 1:
            problems.append(f"{what}: its source did not load")
        elif not a["duration"] or a["duration"] <= 0:
            problems.append(f"{what}: its source has no duration")
    if raw["page_width"] > raw["window_width"] + 1:
        problems.append(f"the page is {raw['page_width']} px wide in a {raw['window_width']} px window")
    if raw["timed_out"]:
        problems.append("the audio players had not settled when the check gave up")
    return ReportCheck(path, problems, len(raw["images"]), len(raw["svgs"]), len(raw["audio"]), raw)


def screenshot(
    path: str | Path,
    png: str | Path,
    browser: str | None = None,
    width: int = 1280,
    height: int = 2000,
    timeout_s: float = 120.0,
) -> Path:
    """Render the page at ``path`` in a ``width`` x ``height`` headless window to the PNG ``png``."""
    path, png = Path(path), Path(png)
    read_page(path)
    exe = _browser(browser)
    png.parent.mkdir(parents=True, exist_ok=True)
    _run([exe, f"--window-size={width},{height}", f"--screenshot={png.resolve()}", path.resolve().as_uri()], timeout_s)
    if not png.is_file() or png.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        raise OutputError(f"the browser wrote no screenshot to {str(png)!r}")
    return png


def main(argv: list[str] | None = None) -> int:
    """``python -m steerlab.reportcheck REPORT.html [...] [--screenshot PNG]``: exit 1 if any fails."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m steerlab.reportcheck", description=main.__doc__)
    parser.add_argument("pages", nargs="+", type=Path)
    parser.add_argument("--screenshot", type=Path, help="also render the (single) page to this PNG")
    parser.add_argument("--window", default="1280x2000", help="window WIDTHxHEIGHT in pixels")
    args = parser.parse_args(argv)
    window = re.fullmatch(r"\s*([1-9]\d{0,4})\s*x\s*([1-9]\d{0,4})\s*", args.window.lower())
    if window is None:
        print(f"Error: --window must be WIDTHxHEIGHT in pixels (1280x2000), got {args.window!r}", file=sys.stderr)
        return 2
    width, height = int(window.group(1)), int(window.group(2))
    failed = 0
    try:
        for page in args.pages:
            result = check_report(page, width=width, height=height)
            print(result.describe())
            failed += not result.ok
        if args.screenshot:
            print(f"wrote {screenshot(args.pages[0], args.screenshot, width=width, height=height)}")
    except SteerlabError as exc:
        print(f"Error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
