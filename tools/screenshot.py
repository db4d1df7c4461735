"""Render an HTML file to PNG with headless Chromium, to see a report as a reader would (and,
for policies.report, run a local page's scripts and read back the DOM: `dump_dom`).

    python -m tools.screenshot reports/evidence.html reports/evidence.png [--width 1400]
                               [--height 2000] [--chromium /usr/bin/chromium]

Chromium runs with a throwaway profile and every background service off (no sync, updates,
QUIC or other network traffic of its own), so the page is rendered exactly from the file. The
window is the picture: --height 6000 shows more of a long page. The screenshot is then checked
to be a real picture (a blank or one-colour PNG is an error), because a page that failed to
render still produces a PNG.

Exit status: 0 with the PNG written, 1 when Chromium failed or produced a blank picture, 2 for
a usage error (no such HTML file, no Chromium).
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_VARIABLE = "PHI_CHROMIUM"
DEFAULT_WIDTH = 1400
DEFAULT_HEIGHT = 2000
TIMEOUT_SECONDS = 120
# A rendered page has text, borders and badges in many shades (anti-aliasing alone gives
# dozens); an empty or failed page has one or two.
MINIMUM_COLOURS = 16
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ScreenshotError(RuntimeError):
    """Chromium could not render the page, or rendered nothing."""


def chromium_path() -> Path | None:
    """PHI_CHROMIUM if set, else /usr/bin/chromium, else chromium on PATH."""
    configured = os.environ.get(CHROMIUM_VARIABLE)
    if configured:
        return Path(configured)
    if DEFAULT_CHROMIUM.exists():
        return DEFAULT_CHROMIUM
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return Path(found) if found else None


def headless_flags(profile: Path) -> list[str]:
    """Chromium without a display, a sandbox (it refuses to run as root, as in containers and
    CI; the pages are our own files) or any network traffic of its own."""
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        f"--user-data-dir={profile}",
    ]


def chromium_command(
    chromium: Path, html: Path, png: Path, *, profile: Path, width: int, height: int
) -> list[str]:
    return [
        str(chromium),
        *headless_flags(profile),
        "--hide-scrollbars",
        f"--screenshot={png}",
        f"--window-size={width},{height}",
        html.resolve().as_uri(),
    ]


def _browser(chromium: Path | None) -> Path:
    browser = chromium or chromium_path()
    if browser is None or not browser.exists():
        raise FileNotFoundError(
            f"Chromium not found ({browser or DEFAULT_CHROMIUM}); install it "
            f"(Debian: apt-get install chromium) or set {CHROMIUM_VARIABLE}"
        )
    return browser


def dump_dom(html: Path, *, chromium: Path | None = None, budget_ms: int = 20_000) -> str:
    """The page's DOM after its scripts ran (up to `budget_ms` of virtual time), serialized.
    The page may load scripts from local files next to it, and nothing from the network."""
    browser = _browser(chromium)
    with tempfile.TemporaryDirectory(prefix="phi-chromium-") as profile:
        command = [
            str(browser),
            *headless_flags(Path(profile)),
            "--allow-file-access-from-files",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            html.resolve().as_uri(),
        ]
        try:
            completed = subprocess.run(
                command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
            )
        except subprocess.TimeoutExpired:
            raise ScreenshotError(
                f"{browser} did not finish within {TIMEOUT_SECONDS} s rendering {html}"
            ) from None
    if completed.returncode != 0:
        raise ScreenshotError(
            f"{browser} exited {completed.returncode} rendering {html}:\n"
            + completed.stderr.strip()[-2000:]
        )
    return completed.stdout


def screenshot(
    html: Path,
    png: Path,
    *,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    chromium: Path | None = None,
) -> Path:
    """Render `html` into `png` (width x height pixels) and check the picture is not blank."""
    if not html.is_file():
        raise FileNotFoundError(f"{html}: no such HTML file")
    browser = _browser(chromium)
    png = png.resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="phi-chromium-") as profile:
        command = chromium_command(
            browser, html, png, profile=Path(profile), width=width, height=height
        )
        try:
            completed = subprocess.run(
                command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
            )
        except subprocess.TimeoutExpired:
            raise ScreenshotError(
                f"{browser} did not finish within {TIMEOUT_SECONDS} s rendering {html}"
            ) from None
    if completed.returncode != 0 or not png.exists():
        raise ScreenshotError(
            f"{browser} exited {completed.returncode} without writing {png}:\n"
            + completed.stderr.strip()[-2000:]
        )
    colours = distinct_colours(png.read_bytes(), limit=MINIMUM_COLOURS)
    if colours < MINIMUM_COLOURS:
        raise ScreenshotError(f"{png}: blank picture ({colours} distinct colours)")
    return png


# --- a small PNG decoder: enough to tell a rendered page from a blank one, without Pillow -----


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    channels: int  # bytes per pixel (8-bit samples only)


_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # greyscale, RGB, grey+alpha, RGBA


def _chunks(data: bytes) -> tuple[PngHeader, bytes]:
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG (bad signature)")
    position = len(PNG_SIGNATURE)
    fields: tuple[int, ...] | None = None
    compressed = bytearray()
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            fields = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed += body
        elif kind == b"IEND":
            break
    if fields is None:
        raise ValueError("not a PNG (no IHDR chunk)")
    width, height, depth, colour_type, _, _, interlace = fields
    if depth != 8 or colour_type not in _CHANNELS or interlace != 0:
        raise ValueError(
            f"unsupported PNG: bit depth {depth}, colour type {colour_type}, interlace {interlace}"
        )
    return PngHeader(width, height, _CHANNELS[colour_type]), bytes(compressed)


def png_header(data: bytes) -> PngHeader:
    return _chunks(data)[0]


def png_rows(data: bytes) -> Iterator[bytes]:
    """The image's rows, top to bottom, filters undone (8-bit, non-interlaced greyscale or
    RGB(A), as Chromium writes them), decoded one at a time so a caller can stop early."""
    header, compressed = _chunks(data)
    stride = header.width * header.channels
    raw = zlib.decompress(compressed)
    if len(raw) != header.height * (stride + 1):
        raise ValueError("corrupt PNG: image data has the wrong length")
    previous = bytes(stride)
    for row in range(header.height):
        start = row * (stride + 1)
        line = _unfilter_row(raw[start], raw[start + 1 : start + 1 + stride], previous, header)
        yield line
        previous = line


def _unfilter_row(kind: int, filtered: bytes, previous: bytes, header: PngHeader) -> bytes:
    if kind == 0:
        return filtered
    if kind == 2:  # up: no dependency inside the row, so no Python-level loop over bytes
        return bytes(map(_add_byte, filtered, previous))
    channels = header.channels
    line = bytearray(filtered)
    for index in range(len(line)):
        left = line[index - channels] if index >= channels else 0
        up = previous[index]
        if kind == 1:
            line[index] = (line[index] + left) & 0xFF
        elif kind == 3:
            line[index] = (line[index] + (left + up) // 2) & 0xFF
        elif kind == 4:
            upper_left = previous[index - channels] if index >= channels else 0
            line[index] = (line[index] + _paeth(left, up, upper_left)) & 0xFF
        else:
            raise ValueError(f"corrupt PNG: filter type {kind}")
    return bytes(line)


def _add_byte(value: int, base: int) -> int:
    return (value + base) & 0xFF


def distinct_colours(data: bytes, limit: int | None = None) -> int:
    """How many different pixel values a PNG has; counting stops at `limit` (a rendered page
    reaches it within its first rows, so only a blank picture is decoded to the end)."""
    channels = png_header(data).channels
    seen: set[bytes] = set()
    for line in png_rows(data):
        seen.update(line[offset : offset + channels] for offset in range(0, len(line), channels))
        if limit is not None and len(seen) >= limit:
            return limit
    return len(seen)


def _paeth(left: int, up: int, upper_left: int) -> int:
    estimate = left + up - upper_left
    distance_left = abs(estimate - left)
    distance_up = abs(estimate - up)
    distance_upper_left = abs(estimate - upper_left)
    if distance_left <= distance_up and distance_left <= distance_upper_left:
        return left
    return up if distance_up <= distance_upper_left else upper_left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.screenshot", description="Render an HTML file to PNG."
    )
    parser.add_argument("html", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    parser.add_argument("--height", type=int, default=DEFAULT_HEIGHT)
    parser.add_argument("--chromium", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        path = screenshot(
            args.html, args.png, width=args.width, height=args.height, chromium=args.chromium
        )
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ScreenshotError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"screenshot: {path} ({args.width}x{args.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
