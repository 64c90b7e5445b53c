"""Grade a folder of submissions in one go: a row per file, the class's view per blank block, each
student's graded copy.

1. Look at every file (in parallel): its recipe (tracer.checks.check.read_recipe), or why it
   cannot be graded.  The folder's class is the one most of its exercises belong to (a class's
   exercises carry it: tracer.checks.roster); an exercise of another class, or made without a
   roster, and a second file of the same student are refused, each with its reason.
2. Grade the others, in parallel, each against its own recipe (tracer.checks.check.grade),
   writing its graded copy (--reports).  A file that cannot be graded is one row with the reason;
   the batch goes on.  Only small rows travel back from the workers: the memory stays that of a
   worker per core, however many files the folder holds.
3. The gradebook: .xlsx (the rows; each student's blocks; the class view, hardest first, as a
   table of live COUNTIF formulas and a chart) or .csv (the rows).
"""

from __future__ import annotations

import csv
import dataclasses
import sys
import time
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tracer.checks.batch import parallel
from tracer import engines
from tracer.checks.check import (
    CARRIED,
    MISSING,
    OWN,
    RIGHT,
    Later,
    Recalculated,
    Tolerance,
    grade,
    read_recipe,
    write_report,
)
from tracer.engines import libreoffice
from tracer.checks.roster import describe
from tracer.errors import TracerError

SPREADSHEETS = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers")  # the files a folder's row is for
STATES = (RIGHT, OWN, CARRIED, MISSING)  # a block of a student: all right; an own mistake; only carried; else incomplete


@dataclass
class Row:
    """One file of the folder: its grade, or why it was refused."""

    file: str
    student: str = ""
    id: str = ""
    variant: str = ""
    reason: str = ""  # why the file was refused ("" when graded)
    right: int = 0
    own: int = 0
    carried: int = 0
    missing: int = 0
    cells: int = 0
    first_block: str = ""
    first_cell: str = ""
    engine: str = ""  # the engine that recalculated formulas saved without a value ("": the saved values)
    seconds: float = 0.0
    blocks: list = field(default_factory=list)  # (label, state) of each blank block, in step order
    lang: str = "en"
    the_class: str = ""
    later: bool = False  # to be recalculated with the folder's other such files, then graded

    @property
    def refused(self) -> bool:
        return bool(self.reason)

    def refuse(self, reason: str) -> None:
        """Refuse the file: the reason, without the file's name the row already gives."""
        self.reason = reason.removeprefix(f"{self.file}: ").removeprefix(f"{self.file} ")

    @property
    def score(self) -> float:
        return 100.0 * self.right / max(1, self.cells)

    @property
    def score_carried(self) -> float:
        return 100.0 * (self.right + self.carried) / max(1, self.cells)

    @property
    def who(self) -> str:
        return self.student or self.id


def block_state(g) -> str:
    """How a student did a block: right (every cell), an own mistake, only carried errors, else incomplete."""
    for state in (OWN, CARRIED, MISSING):
        if g.count(state):
            return state
    return RIGHT


def submissions(folder: Path) -> list[Path]:
    """The spreadsheet files of a folder, by name (no hidden files, no lock files)."""
    if not folder.is_dir():
        raise TracerError(f"no such folder: {folder}")
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SPREADSHEETS
                   and not p.name.startswith((".", "~$")))
    if not found:
        raise TracerError(f"{folder} holds no .xlsx file to grade")
    return found


def _look(path: Path) -> Row:
    """The first look at a file: whose exercise it is, of which class; or why it cannot be graded."""
    row = Row(path.name)
    if path.suffix.lower() != ".xlsx":
        row.refuse(f"a {path.suffix} file, not an .xlsx workbook: save it as Excel 2007-365 (.xlsx) and hand it in again")
        return row
    try:
        recipe = read_recipe(path)
    except TracerError as e:
        row.refuse(_damaged(path) or str(e))
        return row
    except Exception as e:  # noqa: BLE001 - whatever a file does, the batch goes on
        row.refuse(f"cannot be read ({type(e).__name__}: {(str(e).splitlines() or [''])[0]})")
        return row
    who = recipe.get("student") or {}
    row.student, row.id, row.lang = who.get("name", ""), who.get("id", ""), recipe.get("lang", "en")
    row.variant, row.the_class = describe(recipe.get("variant") or {}), recipe.get("class", "")
    return row


def _damaged(path: Path) -> str:
    """Why a file that starts as a zip (an .xlsx) cannot be opened as one; "" otherwise."""
    try:
        with open(path, "rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"
        if zipped and not zipfile.is_zipfile(path):
            return "damaged: an incomplete .xlsx (its zip archive is cut short); ask for it again"
        if zipped:
            zipfile.ZipFile(path).testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, RuntimeError, zlib.error):
        return "damaged: its .xlsx (zip) archive is broken; ask for it again"
    return ""


def refuse_strangers(rows: list[Row]) -> str:
    """The folder's class (the one most of its exercises carry; "" when none was made for a
    roster); refuse the exercises of another class, or of none, and a student's second file."""
    classes = Counter(r.the_class for r in rows if not r.refused and r.the_class)
    if not classes:
        return ""
    the_class = classes.most_common(1)[0][0]
    first: dict[tuple, str] = {}
    for r in rows:
        if r.refused:
            continue
        if r.the_class != the_class:
            r.refuse("an exercise of another class (made for another roster or with other options)" if r.the_class
                     else "an exercise made without --students, not one of this class's")
        elif (r.student, r.id) in first:
            r.refuse(f"{r.who}'s exercise again: already graded from {first[(r.student, r.id)]}")
        else:
            first[(r.student, r.id)] = r.file
    return the_class


@dataclass
class Task:
    path: Path
    row: Row
    tolerance: Tolerance
    engine: object  # a name, or a Recalculated
    reports: Path | None
    n: int  # its row's place


def _grade(task: Task) -> Row:
    """Grade one file (in a worker): its row, with the reason if it cannot be graded."""
    row, start = task.row, time.perf_counter()
    row.later = False
    try:
        result = grade(task.path, task.tolerance, engine=task.engine)
        if task.reports is not None:
            write_report(result, task.reports / task.path.name)
    except Later:
        row.later = True
    except TracerError as e:
        row.refuse(str(e))
    except Exception as e:  # noqa: BLE001 - whatever a file does, the batch goes on
        row.refuse(f"cannot be graded ({type(e).__name__}: {(str(e).splitlines() or [''])[0]})")
    else:
        row.right, row.own, row.carried, row.missing, row.cells = (
            result.total(RIGHT), result.total(OWN), result.total(CARRIED), result.total(MISSING), result.total())
        if result.first_own:
            g, cell = result.first_own
            row.first_block, row.first_cell = g.label, cell.address
        row.engine = result.recalculated[0] if result.recalculated else ""
        row.blocks = [(sys.intern(g.label), block_state(g)) for g in result.tensors]
    row.seconds += time.perf_counter() - start
    return row


def _engine(engine: str | None):
    """The engine the workers are given: LibreOffice recalculates later, once for every file that
    needs it (tracer.engines.libreoffice.recalculating); IronCalc, in process, at once."""
    try:
        chosen = engines.preferred(engine)
    except TracerError:  # none installed: each file that needs one says so
        return engine
    return Recalculated(chosen.LABEL) if chosen is libreoffice else engine


@dataclass
class Gradebook:
    folder: Path
    rows: list  # Row, by file name
    the_class: str
    jobs: int
    seconds: float

    @property
    def graded(self) -> list[Row]:
        return [r for r in self.rows if not r.refused]

    @property
    def refused(self) -> list[Row]:
        return [r for r in self.rows if r.refused]

    @property
    def lang(self) -> str:
        langs = Counter(r.lang for r in self.graded)
        return langs.most_common(1)[0][0] if langs else "en"

    def blocks(self) -> tuple[list[str], list[tuple[str, Counter]]]:
        """The blank blocks in step order, and each with how many students are in each state, the
        hardest first: the most own mistakes, then the fewest right."""
        order, counts = {}, {}
        for r in self.graded:
            for label, state in r.blocks:
                order.setdefault(label, len(order))
                counts.setdefault(label, Counter())[state] += 1
        return list(order), sorted(counts.items(), key=lambda kv: (-kv[1][OWN], kv[1][RIGHT], order[kv[0]]))


    def lines(self) -> list[str]:
        """What `tracer check FOLDER` prints: a line per file, the blocks the hardest first, the count."""
        width = max(len(r.file) for r in self.rows)
        out = []
        for r in self.rows:
            who = f"{r.file:<{width}}" + (f"  {r.who}" if r.who else "")
            if r.refused:
                out.append(f"{who}  refused: {r.reason}")
                continue
            out.append(f"{who}  {r.score:.1f}% ({r.score_carried:.1f}% counting carried errors as right); own "
                       f"mistakes {r.own}, carried errors {r.carried}, missing {r.missing}"
                       + (f"; recalculated in {r.engine}" if r.engine else ""))
        _, blocks = self.blocks()
        if blocks:
            out.append("per blank block, the hardest first: students right / own mistake / carried error only / "
                       "incomplete")
            out += [f"  {label}: {c[RIGHT]} / {c[OWN]} / {c[CARRIED]} / {c[MISSING]}" for label, c in blocks]
        n, refused = len(self.rows), len(self.refused)
        out.append(f"graded {n - refused} of {n} file{'s' if n != 1 else ''}" + (f", {refused} refused" if refused else "")
                   + f" in {self.seconds:.1f} s on {self.jobs} process{'es' if self.jobs != 1 else ''}")
        return out


def grade_folder(folder, tolerance: Tolerance, engine: str | None = None, reports=None,
                 jobs: int | None = None, progress=None) -> Gradebook:
    """Grade every spreadsheet file of `folder` (see the module's docstring); `progress(1)` as each
    file is done."""
    from tracer.checks.batch import cores

    start = time.perf_counter()
    folder = Path(folder)
    paths = submissions(folder)
    if reports is not None:
        reports = Path(reports)
        if reports.resolve() == folder.resolve():
            raise TracerError("--reports must be another folder than the submissions' (the graded copies would replace them)")
        reports.mkdir(parents=True, exist_ok=True)
    jobs = max(1, min(jobs or cores(), len(paths)))
    rows = list(parallel(_look, paths, jobs))
    the_class = refuse_strangers(rows)
    for_workers = _engine(engine)
    tasks = [Task(p, r, tolerance, for_workers, reports, n) for n, (p, r) in enumerate(zip(paths, rows))
             if not r.refused]
    if progress:
        progress(len(rows) - len(tasks))
    out = list(rows)
    for task, row in zip(tasks, parallel(_grade, tasks, jobs)):
        out[task.n] = row
        if progress and not row.later:
            progress(1)
    later = [task for task in tasks if out[task.n].later]
    if later:  # formulas saved without a value: one LibreOffice process recalculates all those files
        began = time.perf_counter()
        with libreoffice.recalculating([task.path for task in later]) as values:
            share = (time.perf_counter() - began) / len(later)
            for task in later:
                out[task.n].seconds += share
                out[task.n] = _grade(dataclasses.replace(task, row=out[task.n],
                                                         engine=Recalculated(libreoffice.LABEL, values)))
                if progress:
                    progress(1)
    return Gradebook(folder, out, the_class, jobs, time.perf_counter() - start)


# --- the gradebook file ---------------------------------------------------------------------------

def columns(tpl) -> list[str]:
    """The rows' headers, in the gradebook's language."""
    t = tpl.t
    return [t(k) for k in ("gb_file", "gb_student", "gb_id", "gb_variant", "gb_score", "gb_score_carried", "gb_right",
                           "gb_own", "gb_carried", "gb_missing", "gb_cells", "gb_first_block", "gb_first_cell",
                           "gb_engine", "gb_seconds", "gb_refused")]


def values(r: Row, tpl) -> list:
    """A row's cells as the CSV holds them (the scores rounded to 0.1; a refused file: its reason)."""
    if r.refused:
        return [r.file, r.student, r.id, r.variant, *[""] * 11, r.reason]
    return [r.file, r.student, r.id, r.variant, round(r.score, 1), round(r.score_carried, 1), r.right, r.own,
            r.carried, r.missing, r.cells, r.first_block, r.first_cell, r.engine or tpl.t("gb_saved_values"),
            round(r.seconds, 2), ""]


def write_gradebook(book: Gradebook, path) -> None:
    """The gradebook at `path`: .xlsx or .csv, in the class's language, written atomically."""
    from tracer.render.atomic import atomic_text
    from tracer.render.template import Template

    path = Path(path)
    tpl = Template("vae", book.lang)  # common.toml's words; the model's own texts are not needed
    if path.suffix.lower() == ".csv":
        with atomic_text(path) as f:
            out = csv.writer(f, lineterminator="\n")
            out.writerow(columns(tpl))
            out.writerows(values(r, tpl) for r in book.rows)
        return
    _write_xlsx(book, path, tpl)


def _write_xlsx(book: Gradebook, path: Path, tpl) -> None:
    """Three sheets: the rows (the scores as formulas of the counts), each student's blocks, and
    the class view (COUNTIF of the blocks sheet) with a stacked bar chart, the hardest block first."""
    import xlsxwriter
    from xlsxwriter.utility import xl_col_to_name, xl_rowcol_to_cell

    from tracer.render.atomic import atomic_path, document_date
    from tracer.render.layout import quote_sheet

    t = tpl.t
    names = {s: t(f"state_{k}") for s, k in zip(STATES, ("right", "own", "carried", "missing"))}
    fills = {RIGHT: "#C6EFCE", OWN: "#FFC7CE", CARRIED: "#FFEB9C", MISSING: "#D9D9D9"}  # as the graded copies
    labels, blocks = book.blocks()
    with atomic_path(path) as tmp:
        wb = xlsxwriter.Workbook(str(tmp), {"strings_to_numbers": False, "strings_to_formulas": False,
                                           "strings_to_urls": False})
        wb.set_properties({"created": document_date()})
        bold = wb.add_format({"bold": True, "text_wrap": True, "valign": "top", "bg_color": "#D9E1F2", "border": 1})
        pct, secs = wb.add_format({"num_format": "0.0"}), wb.add_format({"num_format": "0.00"})
        state_fmt = {s: wb.add_format({"bg_color": c}) for s, c in fills.items()}

        rows = wb.add_worksheet(t("gradebook_sheet"))
        heads = columns(tpl)
        rows.write_row(0, 0, heads, bold)
        rows.freeze_panes(1, 2)
        rows.set_row(0, 45)
        wrap = wb.add_format({"text_wrap": True, "valign": "top"})
        for k, width in enumerate((20, 22, 8, 14, 8, 10, 7, 7, 7, 7, 7, 26, 14, 11, 7, 40)):
            rows.set_column(k, k, width, wrap if k in (11, 15) else None)
        for n, r in enumerate(book.rows, start=1):
            rows.write_row(n, 0, [r.file, r.student, r.id, r.variant])
            if r.refused:
                rows.write_string(n, 15, r.reason)
                continue
            right, carried, cells = (xl_rowcol_to_cell(n, c) for c in (6, 8, 10))
            rows.write_formula(n, 4, f"=100*{right}/{cells}", pct, r.score)
            rows.write_formula(n, 5, f"=100*({right}+{carried})/{cells}", pct, r.score_carried)
            rows.write_row(n, 6, [r.right, r.own, r.carried, r.missing, r.cells])
            rows.write_row(n, 11, [r.first_block, r.first_cell, r.engine or t("gb_saved_values")])
            rows.write_number(n, 14, r.seconds, secs)
        rows.autofilter(0, 0, len(book.rows), len(heads) - 1)
        _print_setup(rows, repeat=(0, 0))

        grid = wb.add_worksheet(t("gradebook_blocks"))  # a student per row, a block per column
        grid.write_string(0, 0, t("gradebook_blocks_title"))
        grid.write_row(1, 0, [t("gb_file"), t("gb_student")], bold)
        grid.write_row(1, 2, labels, bold)
        grid.set_row(1, 60)
        grid.set_column(0, 1, 22)
        grid.set_column(2, max(2, 1 + len(labels)), 16)
        grid.freeze_panes(2, 2)
        _print_setup(grid, repeat=(1, 1), wide=len(labels) > PAGE_BLOCKS)
        grid.repeat_columns(0, 1)
        graded = book.graded
        for n, r in enumerate(graded, start=2):
            grid.write_row(n, 0, [r.file, r.student or r.id])
            mine = dict(r.blocks)
            for k, label in enumerate(labels):
                if label in mine:
                    grid.write_string(n, 2 + k, names[mine[label]], state_fmt[mine[label]])

        view = wb.add_worksheet(t("gradebook_class"))
        view.write_string(0, 0, t("gradebook_class_title"))
        view.write_row(1, 0, [t("gb_block"), *(names[s] for s in STATES)], bold)
        view.set_column(0, 0, 40)
        view.set_column(1, 4, 12)
        _print_setup(view, repeat=(1, 1))
        where = quote_sheet(t("gradebook_blocks"))
        last = 1 + len(graded)
        for n, (label, counts) in enumerate(blocks, start=2):
            view.write_string(n, 0, label)
            col = xl_col_to_name(2 + labels.index(label))
            for k, state in enumerate(STATES, start=1):
                view.write_formula(n, k, f'=COUNTIF({where}!{col}3:{col}{last + 1},"{names[state]}")', None,
                                   counts[state])
        if blocks:
            chart = wb.add_chart({"type": "bar", "subtype": "stacked"})
            for k, state in enumerate(STATES, start=1):
                chart.add_series({"name": [view.name, 1, k], "categories": [view.name, 2, 0, 1 + len(blocks), 0],
                                  "values": [view.name, 2, k, 1 + len(blocks), k], "fill": {"color": fills[state]},
                                  "border": {"color": "#808080"}})
            chart.set_title({"name": t("gradebook_class"), "name_font": {"size": 12}})
            # a bar chart's y axis is its categories: the hardest block on top, as in the table
            chart.set_y_axis({"reverse": True})
            chart.set_x_axis({"name": t("gb_students"), "min": 0, "max": max(1, len(graded)), "major_gridlines":
                              {"visible": True, "line": {"color": "#D9D9D9"}}})
            chart.set_legend({"position": "bottom"})
            chart.set_size({"width": 720, "height": max(300, 40 + 22 * len(blocks))})
            view.insert_chart(1, 6, chart)
        wb.close()


PAGE_BLOCKS = 24  # a student's blocks printed across one page at most this many; more: over several pages


def _print_setup(ws, repeat: tuple[int, int], wide: bool = False) -> None:
    """Landscape, one page wide (a wide sheet: its own width, the first columns on every page),
    the header rows on every page, the file's name and the page in the footer."""
    ws.set_landscape()
    ws.set_paper(9)  # A4
    ws.repeat_rows(*repeat)
    ws.set_footer("&L&A&R&P / &N")
    if not wide:
        ws.fit_to_pages(1, 0)
