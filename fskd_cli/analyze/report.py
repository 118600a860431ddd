"""``fskd report RUN...``: one page with the tables and figures of the runs named.

The page is Markdown (figures linked by relative path, so it renders on GitHub beside the PNGs) or, when
the output ends in ``.html``, one self-contained HTML file (figures embedded), made from the same
Markdown by a converter for the few constructs the report uses. Sections:

1. the runs: kind, method, training scale, backbone, teacher, steps, from each run's training setting
   (as its eval JSONs record it, else its checkpoint);
2. the paper-style tables of their ``results.csv`` rows (:func:`~fskd_cli.analyze.table.results_table`),
   with the paper's numbers beside ours when asked;
3. each eval of each run (``runs/NAME/eval/*.json``): protocol, metrics and its ROC or CMC figure;
4. the figures of ``fskd analyze`` output folders given with ``figures`` (norms, correlation,
   attention), with their per-block summaries.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from .. import __version__
from ..core.checkpoint import load_checkpoint
from ..core.errors import FskdError
from ..core.io import write_text
from ..core.outputs import check_replaceable, starts_with_text
from ..core.results import check_results_csv, read_setting
from ..core.runs import RunSetting
from ..core.scale import Scale
from .paper import method_name
from .stats import format_p, parse_p, stars
from .table import results_table

PAGE_SUFFIXES = (".md", ".html", ".htm")
# analyze outputs the report knows: file -> (caption, summary CSV shown under it)
FIGURES = {
    "attention.png": ("Self-attention maps of the first block, HR teacher vs LR students (cf. paper Figure 3).", None),
    "norms.png": ("Feature norm per block, teacher on HR vs students on LR, with the t-test per block; "
                  "*** = p < 0.01 (cf. paper Figure 4).", "norms_summary.csv"),
    "correlation.png": ("Pixel-level Pearson correlation of teacher-HR and student-LR features per block "
                        "(cf. paper Figure 5).", "correlation_summary.csv"),
}


def build_report(runs: list[Path], out: Path, *, results: Path | None = None, figures: list[Path] = (),
                 paper: bool = False, title: str | None = None) -> Path:
    """Write the report to ``out`` (``.md``, or ``.html`` for one self-contained file); return its path.

    ``runs`` are run folders (or their checkpoints) or study folders: every run under a study folder (any
    depth), its ``results.csv`` (unless ``results`` is given) and its analysis figures are taken in.
    """
    out = _check_page(Path(out))
    if not runs:
        raise FskdError("name at least one run or study folder")
    labels, studies = _gather([Path(r) for r in runs])
    folders = list(labels)
    results = _results_of(studies, results)
    figures = _figures_of([Path(d) for d in figures], studies)
    html_out = out.suffix.lower() in (".html", ".htm")
    md_path = out.with_suffix(".md") if html_out else out
    _refuse_foreign(out, md_path)
    here = md_path.parent.resolve()

    names = ", ".join(_folder(Path(r)).resolve().name for r in runs)
    lines = [f"# {title or 'fskd report: ' + md_escape(names)}", "",
             f"Written {datetime.now(UTC).isoformat(timespec='seconds')} by fskd {__version__}; "
             f"results from `{results}`.", ""]
    lines += _runs_section(folders, labels)
    lines += _tables_section(folders, results, md_path, paper)
    lines += _compare_section(folders, results, md_path)
    lines += _evals_section(folders, labels, here)
    for d in figures:
        lines += _figures_section(Path(d), here)
    md = "\n".join(lines).rstrip() + "\n"
    if html_out:
        write_text(out, markdown_to_html(md, here, title or "fskd report"))
        return out
    write_text(out, md)
    return out


def _check_page(out: Path) -> Path:
    """``--out`` names a page in a format the report writes; checked before any work."""
    if out.suffix.lower() not in PAGE_SUFFIXES:
        raise FskdError(f"{out}: the report is written as a .md page (figures linked) or an .html page (one "
                        f"self-contained file), not {out.suffix or 'a file without suffix'}; choose --out with one of these")
    return out


def _refuse_foreign(out: Path, md_path: Path) -> None:
    """Replace only an earlier report: an existing page ``out`` must carry fskd's "Written ... by fskd" line, and
    the table files (``NAME_table.md/.csv``, shared by the .md and the .html page of one name) may exist only
    beside such a page, of either format: an .html report after an .md one of the same name is no stranger."""

    def ours(page: Path) -> bool:
        return starts_with_text(page, " by fskd ", 4096)

    check_replaceable(out, ours, "report")  # the one page written (an .html report writes no .md)
    if any(page.is_file() and ours(page) for page in map(md_path.with_suffix, PAGE_SUFFIXES)):
        return
    table = md_path.with_name(md_path.stem + "_table")
    for existing in (table.with_suffix(".md"), table.with_suffix(".csv")):
        if existing.exists():
            raise FskdError(f"{existing}: exists beside no `fskd report` page; choose another --out")


def _folder(path: Path) -> Path:
    return path.parent if path.suffix == ".pt" else path


def _gather(args: list[Path]) -> tuple[dict[Path, str], list[Path]]:
    """Every run folder named (resolved, in order) with the name the page gives it, and the study folders named.

    A run folder (or its checkpoint) is named by its folder; a study folder stands for every run folder under
    it, at any depth, each named by its path in the study (``s0/teacher``), so seeds of one method stay apart.
    """
    labels: dict[Path, str] = {}
    studies: list[Path] = []
    for arg in args:
        if (_folder(arg) / "checkpoint.pt").is_file():
            labels.setdefault(_folder(arg).resolve(), _folder(arg).name)
            continue
        runs = sorted(Path(d) for d, _, files in os.walk(arg) if "checkpoint.pt" in files) if arg.is_dir() else []
        if not runs:
            raise FskdError(f"{arg}: not a run folder (no checkpoint.pt in it), nor a study folder (no run folder under it)")
        studies.append(arg)
        for run in runs:
            labels.setdefault(run.resolve(), run.relative_to(arg).as_posix())
    return labels, studies


def _results_of(studies: list[Path], given: Path | None) -> Path:
    """The results CSV: ``--results``, else the study folders' one ``results.csv`` (at the top of a study, else
    anywhere under it), else ``results.csv`` here; checked as eval checks it (one line naming the file and its
    columns when it is not fskd's)."""
    if given is None:
        held = list(dict.fromkeys(p for s in studies for p in _results_under(s)))
        if len(held) > 1:
            raise FskdError(f"--results: the study folders hold several results files ({', '.join(map(str, held))}); "
                            "name the one to use")
        given = held[0] if held else Path("results.csv")
    return check_results_csv(given)


def _results_under(study: Path) -> list[Path]:
    top = study / "results.csv"
    return [top] if top.is_file() else sorted(Path(d) / "results.csv" for d, _, files in os.walk(study) if "results.csv" in files)


def _figures_of(given: list[Path], studies: list[Path]) -> list[Path]:
    """The `fskd analyze` folders to show: those given, then those under each study holding its figures
    (``norms.png``, ``correlation.png``, ``attention.png``); each folder once."""
    for d in given:
        if not d.is_dir():
            raise FskdError(f"{d}: not a folder (give the --out folder of an `fskd analyze` command)")
    found = [Path(d) for s in studies for d, _, files in sorted(os.walk(s)) if set(FIGURES) & set(files)]
    folders: dict[Path, Path] = {}
    for d in given + found:
        folders.setdefault(d.resolve(), d)
    return list(folders.values())


def _setting(folder: Path) -> dict[str, Any]:
    """The run's training setting: as its eval JSONs record it, else read from its checkpoint."""
    setting = read_setting(folder / "eval")
    if setting is None:
        setting = RunSetting.of(load_checkpoint(folder / "checkpoint.pt")).to_dict()
    return setting


def _last_step(folder: Path) -> str:
    log = folder / "log.csv"
    if not log.exists():
        return "-"
    # a damaged log (bytes that are not UTF-8, a NUL) shows its step as unknown: the page is about the results
    with open(log, newline="", encoding="utf-8", errors="replace") as f:
        try:
            rows = list(csv.DictReader(f))
        except csv.Error:
            return "-"
    return (rows[-1].get("step") or "-") if rows else "-"


def _runs_section(folders: list[Path], labels: dict[Path, str]) -> list[str]:
    lines = ["## Runs", "", "| run | kind | method | trained at | backbone | teacher | steps | training data |",
             "|---|---|---|---|---|---|---|---|"]
    for f in folders:
        s = _setting(f)
        scale = "1x (HR)" if s["kind"] == "teacher" else "multi" if s["scale"] == Scale.multi.value else f"{s['scale']}x"
        teacher = Path(s["teacher"]).parent.name if s.get("teacher") else "-"
        cells = [labels[f], s["kind"], method_name(s["method"]), scale, s.get("backbone", "?"), teacher, _last_step(f)]
        lines.append("| " + " | ".join(md_escape(str(c)) for c in cells) + f" | `{s.get('data') or '?'}` |")
    return lines + [""]


def _tables_section(folders: list[Path], results: Path, md_path: Path, paper: bool) -> list[str]:
    lines = ["## Results" + (" (paper's numbers beside ours)" if paper else ""), ""]
    if not Path(results).exists():
        return lines + [f"No `{results}` yet: run `fskd eval` first.", ""]
    table_out = md_path.with_name(md_path.stem + "_table")
    try:
        md = results_table(Path(results), table_out, paper=paper, runs=[str(f.resolve()) for f in folders])
    except FskdError as e:  # no rows for these runs, or a row the table cannot use: the page says which
        return lines + [f"Not shown: {md_escape(str(e))}.", ""]
    md = re.sub(r"(?m)^### ", "#### ", md)
    return lines + [md.strip(), "", f"(also as CSV: `{table_out.with_suffix('.csv').name}`)", ""]


def _compare_section(folders: list[Path], results: Path, md_path: Path) -> list[str]:
    """Each method against ``base``, paired by seed (``fskd analyze compare``; files ``NAME_compare*`` beside the
    page), or the one line saying why not (no base run, no seed known, ...)."""
    from .compare import compare_results

    if not Path(results).exists():
        return []
    try:
        done = compare_results(Path(results), md_path.with_name(md_path.stem + "_compare"),
                               runs=[str(f.resolve()) for f in folders])
    except FskdError as e:
        return ["## Paired comparison with base, over seeds", "", f"Not shown: {e}.", ""]
    body = re.sub(r"(?m)^### ", "#### ", done.body)
    return ["## Paired comparison with base, over seeds", "", done.introduction, "", body.strip(), ""]


def _evals_section(folders: list[Path], labels: dict[Path, str], here: Path) -> list[str]:
    """One summary row per eval JSON, then each eval's ROC or CMC figure with a caption."""
    rows, figures = [], []
    for f in folders:
        for js in sorted((f / "eval").glob("*.json")):
            ev = _read_eval(js)
            if ev is None:
                continue
            m = ev.get("metrics") or {}
            if "pairs" in ev:
                how = f"{ev.get('protocol')}; left {ev.get('left_scale')}x, right {ev.get('right_scale')}x"
                size = f"{ev['pairs']} pairs" + (f" ({ev['missing_pairs']} missing)" if ev.get("missing_pairs") else "")
            elif "probes" in ev:
                how = f"probes {ev.get('probe_scale')}x, gallery {ev.get('gallery_scale')}x"
                size = f"{ev['probes']} probes, {ev.get('gallery')} + {ev.get('distractors')} distractors"
            else:
                how, size = f"split {ev.get('split', '?')}", f"{ev.get('images', '?')} images"
            shown = ", ".join(f"{k} {_pct(v)}" for k, v in m.items())
            cells = [labels[f], ev.get("dataset", js.stem), f"{ev.get('scale', '?')}x", how, size, shown]
            rows.append("| " + " | ".join(md_escape(str(c)) for c in cells) + " |")
            for key in ("roc_png", "cmc_png"):
                png = _existing(ev.get(key), js.parent)
                if png:
                    caption = f"{labels[f]}: {ev.get('dataset')} at {ev.get('scale')}x, {how}"
                    figures += [f"![{md_escape(key[:3].upper() + ' of ' + labels[f])}]({_rel(png, here)})", "",
                                f"*{md_escape(caption)}*", ""]
    if not rows:
        return ["## Evaluations", "", "No evals yet (`runs/NAME/eval/*.json`).", ""]
    return (["## Evaluations", "", "Rates in %.", "", "| run | benchmark | scale | how | size | metrics |",
             "|---|---|---|---|---|---|", *rows, ""] + (["### ROC and CMC curves", "", *figures] if figures else []))


def _read_eval(path: Path) -> dict[str, Any] | None:
    """An eval JSON as the page shows it, or None for a file that is not one (unreadable, not an object, metrics
    that are not a mapping): such files are left out, as files of other tools in ``eval/`` are."""
    try:
        ev = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(ev, dict) or not isinstance(ev.get("metrics") or {}, dict):
        return None
    return ev


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}" if isinstance(v, float) and 0 <= v <= 1 else _fmt(v)


def _figures_section(folder: Path, here: Path) -> list[str]:
    lines = [f"## Figures: `{folder}`", ""]
    pngs = sorted(folder.glob("*.png"), key=lambda p: (list(FIGURES).index(p.name) if p.name in FIGURES else 99, p.name))
    if not pngs:
        return lines + ["No figures in this folder.", ""]
    for png in pngs:
        caption, summary = FIGURES.get(png.name, (png.stem, None))
        lines += [f"![{md_escape(png.stem)}]({_rel(png, here)})", "", f"*{md_escape(caption)}*", ""]
        if summary and (folder / summary).exists():
            lines += _summary_table(folder / summary) + [""]
    return lines


def _summary_table(path: Path) -> list[str]:
    """norms_summary.csv / correlation_summary.csv as a model x block table."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return []
    columns = set(rows[0])
    if not {"model", "block"} <= columns or not columns & {"pearson_r", "mean"} or not all(
            _is_number(r.get("pearson_r", r.get("mean"))) for r in rows):
        return [f"(`{md_escape(path.name)}` is not an `fskd analyze` summary: columns "
                f"{md_escape(', '.join(sorted(map(str, columns))))}; not shown.)"]
    blocks = list(dict.fromkeys(r["block"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    cell: dict[tuple[str, str], str] = {}
    for r in rows:
        if "pearson_r" in r:
            cell[r["model"], r["block"]] = f"r = {float(r['pearson_r']):.3f}"
        else:
            p, nonfinite = parse_p(r.get("p")), r.get("nonfinite", "0") not in ("", "0")
            test = f" ({format_p(p)} {stars(p)})" if p is not None else " (not finite)" if nonfinite else ""
            cell[r["model"], r["block"]] = f"{float(r['mean']):.4g}{test}"
    what = "Pearson r" if "pearson_r" in rows[0] else "mean feature norm (t-test p vs teacher)"
    lines = [f"| model: {what} | " + " | ".join(map(md_escape, blocks)) + " |", "|" + "---|" * (len(blocks) + 1)]
    lines += ["| " + " | ".join(md_escape(c) for c in [method_name(m), *(cell.get((m, b), "-") for b in blocks)]) + " |"
              for m in models]
    return lines


def _is_number(text: str | None) -> bool:
    try:
        float(text or "")
    except ValueError:
        return False
    return True


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _existing(path: str | None, eval_dir: Path) -> Path | None:
    """A figure recorded in an eval JSON: where it was written, or the eval folder if the run moved."""
    if not path or not isinstance(path, str):
        return None
    for candidate in (Path(path), eval_dir / Path(path).name):
        if candidate.exists():
            return candidate
    return None


def _rel(path: Path, here: Path) -> str:
    """A figure's link: relative to the page, percent-encoded (a space or parenthesis would end a Markdown link)."""
    return quote(Path(os.path.relpath(Path(path).resolve(), here)).as_posix())


def md_escape(text: str) -> str:
    """``text`` shown literally in Markdown (a caption, a table cell): its Markdown characters backslash-escaped,
    so ``***`` stays three asterisks and a ``|`` does not split a cell."""
    return re.sub(r"([\\`*_\[\]<>|~#])", r"\\\1", text)


# ---------------------------------------------------------------------------------------------------
# Markdown -> HTML for the constructs above: headings, pipe tables, images, bullets, paragraphs,
# `code` and *emphasis*. Images are embedded as data URIs, so the page is one file.

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f2f2f2}img{max-width:100%}code{background:#f4f4f4}
h1,h2{border-bottom:1px solid #ddd}"""


def _inline(text: str) -> str:
    """One line of Markdown as HTML: `code` spans and backslash escapes kept literal, then *emphasis*."""
    kept: list[str] = []

    def keep(html_text: str) -> str:
        kept.append(html_text)
        return f"\0{len(kept) - 1}\0"

    text = re.sub(r"`([^`]+)`|\\([!-/:-@\[-`{-~])", lambda m: keep(
        f"<code>{html.escape(m.group(1))}</code>" if m.group(1) is not None else html.escape(m.group(2))), text)
    text = re.sub(r"(?<![\w*])\*([^*]+)\*(?![\w*])", r"<em>\1</em>", html.escape(text))
    return re.sub("\0(\\d+)\0", lambda m: kept[int(m.group(1))], text)


def _image(alt: str, src: str, here: Path) -> str:
    src = unquote(src)
    path = (here / src) if not Path(src).is_absolute() else Path(src)
    if path.exists():
        src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="{src}"></p>'


def markdown_to_html(md: str, here: Path, title: str) -> str:
    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif m := re.match(r"^(#{1,6}) (.*)$", line):
            n = len(m.group(1))
            out.append(f"<h{n}>{_inline(m.group(2))}</h{n}>")
            i += 1
        elif m := re.match(r"^!\[(.*)\]\((.*)\)$", line.strip()):
            out.append(_image(m.group(1), m.group(2), here))
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in re.split(r"(?<!\\)\|", lines[i].strip()[1:].removesuffix("|"))])
                i += 1
            body = [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in rows[0]) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</table>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#|\||!\[|- )", lines[i]):
                para.append(lines[i])
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")
