"""A student's version of a walkthrough: chosen blocks left blank, nothing that gives them away.

    blank   the tensors the student computes: whole phases (forward, loss, backward, update) or
            tensors by name, in every iteration or only in some
    hidden  every tensor computed from a blank one: still live formulas (they recompute from the
            student's answers) but stored without a value, so no cached number leaks an answer

The workbook also carries, on a hidden sheet, what `tracer check` needs to rebuild the exercise:
the model, its options, the blank selection, and the files the options name (an mlp config, a
text).  With `self_check`, the answers sit on a second hidden sheet and each blank block gets a
cell that turns green or red: such a file contains the answers.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from tracer.errors import TracerError, close_names
from tracer.render.layout import MAX_ROWS, Layout, Place
from tracer.render.template import LANGS, Template
from tracer.render.xlsx import INFO_SHEET

PHASES = ("forward", "loss", "backward", "update")
CHUNK = 30_000  # characters per cell (Excel's limit is 32,767)
MAX_EMBED = 2_000_000  # bytes of a file named by an option that travel inside the workbook


@dataclass
class Exercise:
    """Which tensors are blank and which are hidden; where the self-check's answers go."""

    recipe: dict  # model, lang, config, blank, iterations, self_check, files, fingerprint
    blank: list  # tensors, in step order
    hidden: set = field(default_factory=set)  # ids of blank tensors and of everything computed from them
    answers: dict = field(default_factory=dict)  # id -> Place on the answers sheet (self-check)
    answer_sheet: str = ""

    def __post_init__(self):
        self.blank_ids = {id(t) for t in self.blank}

    @property
    def self_check(self) -> bool:
        return bool(self.recipe.get("self_check"))

    def nearest_blanks(self, t) -> list:
        """The blank tensors t is computed from with no other blank tensor between: once the
        student has filled them, t has its value (for the overview: empty until then)."""
        found, seen, todo = [], set(), [t]
        while todo:
            u = todo.pop()
            for v in u.inputs:
                if id(v) in seen or id(v) not in self.hidden:
                    continue
                seen.add(id(v))
                (found if id(v) in self.blank_ids else todo).append(v)
        if id(t) in self.blank_ids:
            found.append(t)
        order = {id(u): k for k, u in enumerate(self.blank)}
        return sorted(found, key=lambda u: order[id(u)])

    @property
    def student_name(self) -> str:
        """The student's name (or id) of a class's exercise, else ""."""
        who = self.recipe.get("student") or {}
        return who.get("name") or who.get("id") or ""

    def info_rows(self) -> list[tuple[str, str]]:
        """The hidden sheet's rows: a warning, then the recipe as JSON in chunks."""
        text = json.dumps(self.recipe)  # in order: the overview lists the settings so
        return [(str(k), text[k * CHUNK:(k + 1) * CHUNK]) for k in range(-(-len(text) // CHUNK))]


def is_exercise(path: Path) -> bool:
    """Whether the workbook at `path` (an .xlsx file) is a student's version."""
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True)
    except Exception:  # not a workbook openpyxl can read: not an exercise either
        return False
    try:
        return INFO_SHEET in wb.sheetnames
    finally:
        wb.close()


def parse_iterations(spec: str, last: int, first: int = 1) -> set[int]:
    """'all' or '1,3' -> the iterations whose blocks are left blank (first … last: after a
    warm-up of N steps, the traced iterations are N+1 … N+K)."""
    if spec.strip().lower() == "all":
        return set(range(first, last + 1))
    try:
        chosen = {int(s) for s in spec.split(",") if s.strip()}
    except ValueError:
        chosen = set()
    if not chosen or not all(first <= k <= last for k in chosen):
        raise TracerError(f"--blank-iterations must be 'all' or iteration numbers {first} … {last} separated by commas (got {spec!r})")
    return chosen


def plain(name: str) -> str:
    """How a name is matched: sub- and superscript digits as digits (a₃ → a3), ∂ as d, no spaces
    (∂L/∂W₁ → dL/dW1, the tensor's own name)."""
    return unicodedata.normalize("NFKC", name).replace("∂", "d").replace(" ", "")


def names_of(tape) -> dict[str, list[str]]:
    """Every tensor name of the tape, in step order, with the symbols the workbook shows for it
    (in every language)."""
    templates = [Template.of(tape, lang) for lang in LANGS]
    found: dict[str, list[str]] = {}
    for t in tape.tensors:
        if t.name not in found:
            found[t.name] = list(dict.fromkeys(tpl.symbol(t.name) for tpl in templates))
    return found


def steps_of(tape) -> dict[str, None]:
    """The names of the steps a student may compute, in step order."""
    return {t.name: None for t in tape.tensors if t.op is not None and t.iteration and t.phase != "after"}


def choices(tape) -> list[str]:
    """What --blank takes (`--blank help`): the phases, then every step by name and by symbol."""
    names = names_of(tape)
    listed = [f"  {n}" + (f"  ({', '.join(s for s in names[n] if s != n)})" if any(s != n for s in names[n]) else "")
              for n in steps_of(tape)]
    return [f"phases: {', '.join(PHASES)}", "the steps, in order (by name or by symbol):", *listed]


def select(tape, spec: str, iterations: set[int]) -> list:
    """The tensors `spec` names (phases and/or tensors, by name or by the symbol the workbook
    shows: a3, x̂, ∂L/∂W1, dL/dW1; comma-separated), in step order."""
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise TracerError("--blank needs phases (forward, loss, backward, update) or tensor names")
    names = names_of(tape)
    by_key: dict[str, set] = {}
    for name, symbols in names.items():
        for key in (name, plain(name), *symbols, *map(plain, symbols)):
            by_key.setdefault(key, set()).add(name)
    computed = steps_of(tape)
    wanted = set()
    for item in items:
        if item in PHASES:
            continue
        found = by_key.get(item) or by_key.get(plain(item))
        if not found:
            close = close_names(item, [*PHASES, *computed], 1)
            raise TracerError(f"--blank: no phase or tensor named {item!r}"
                              + (f" (did you mean {close[0]!r}?)" if close else "")
                              + f"; phases: {', '.join(PHASES)}; `--blank help` lists the {len(computed)} steps")
        if not found & computed.keys():
            raise TracerError(f"--blank: {item!r} is a given input (data, a parameter, a draw or a "
                              "hyperparameter), not a step to compute")
        wanted |= found
    chosen = [t for t in tape.tensors if t.op is not None and t.iteration in iterations and t.phase != "after"
              and (t.phase in items or t.name in wanted)]
    if not chosen:
        raise TracerError(f"--blank {spec!r} leaves nothing blank in iterations {sorted(iterations)}")
    return chosen


def downstream(tape, blank: list) -> set:
    """Ids of the blank tensors and of every tensor computed from one (the tape is in step order)."""
    hidden = {id(t) for t in blank}
    for t in tape.tensors:
        if any(id(u) in hidden for u in t.inputs):
            hidden.add(id(t))
    return hidden


def fingerprint(tape, blank: list) -> str:
    """A digest of everything the student is given and asked: it changes when the exercise would."""
    h = hashlib.sha256()
    for t in tape.tensors:
        if t.op is None:
            h.update(f"{t.key}{t.shape}".encode())
            h.update(t.value.tobytes())
    for t in blank:
        h.update(f"{t.key}{t.shape}".encode())
    return h.hexdigest()[:16]


def seal(recipe: dict) -> str:
    """A digest of the recipe itself, so that `tracer check` finds an edited recipe before it
    rebuilds anything (the fingerprint needs the rebuilt tape).  Not a secret: it catches an edit
    or damage, and check's size limits bound what any recipe can cost."""
    text = json.dumps({k: v for k, v in recipe.items() if k != "seal"}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def embed_files(model, cfg) -> dict:
    """The files the options name (--config, --text, --mnist), so the checker needs no other file."""
    files = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if not f.metadata.get("path") or value is None or not Path(value).is_file():
            continue
        data = Path(value).read_bytes()
        if len(data) > MAX_EMBED:
            raise TracerError(f"--{f.name.replace('_', '-')} {value}: {len(data):,} bytes is too large to travel "
                              f"inside an exercise workbook (at most {MAX_EMBED:,})")
        files[f.name] = {"name": Path(value).name, "data": base64.b64encode(data).decode("ascii")}
    return files


CLASS_KEYS = ("student", "variant", "class")  # a class's exercise (tracer.checks.roster): whose it is


def build(tape, model_name: str, config: dict, files: dict, lang: str, blank_spec: str,
          iterations_spec: str, self_check: bool, student: dict | None = None) -> Exercise:
    """`student`: the CLASS_KEYS of one student's exercise of a class (their name, their variant
    of the options, the class), carried in the recipe."""
    traced = [t.iteration for t in tape.tensors if t.iteration]
    iterations = parse_iterations(iterations_spec, max(traced), min(traced))
    blank = select(tape, blank_spec, iterations)
    recipe = {"format": 1, "model": model_name, "lang": lang, "config": config, "files": files,
              "blank": blank_spec, "iterations": iterations_spec, "self_check": self_check,
              "fingerprint": fingerprint(tape, blank), **(student or {})}
    recipe["seal"] = seal(recipe)
    return Exercise(recipe, blank, downstream(tape, blank))


def place_answers(ex: Exercise, layout) -> None:
    """Self-check: each blank tensor's answers on the answers sheet, stacked, shaped as displayed."""
    ex.answer_sheet = layout.tpl.t("answers")
    r = 1
    for t in ex.blank:
        p = layout.place[id(t)]
        ex.answers[id(t)] = Place(ex.answer_sheet, r, 0, p.rows, p.cols, p.transposed)
        r += p.display[0] + 1
        if r > MAX_ROWS:
            raise TracerError("--self-check: the answers do not fit on one sheet; leave fewer blocks blank")


def make(tape, model, cfg, lang: str, blank_spec: str, iterations_spec: str, self_check: bool,
         student: dict | None = None, shown: dict | None = None):
    """The student's workbook, laid out: (layout, exercise); tracer.render.xlsx.write_xlsx writes it.
    `student`: see build; `shown`: options recorded (and shown) otherwise than cfg has them (a
    class's own copy of a file, by the file's name)."""
    config = dataclasses.asdict(cfg) | (shown or {})
    ex = build(tape, model.NAME, config, embed_files(model, cfg), lang, blank_spec, iterations_spec, self_check,
               student)
    layout = Layout(tape, Template.of(tape, lang), config, ex)
    if self_check:
        place_answers(ex, layout)
    return layout, ex
