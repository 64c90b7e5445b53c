"""A class: one exercise per student of a roster, each with its own variant of the options, so that
neighbours' answers differ; the teacher's key and a manifest beside them.

    roster    a CSV file (UTF-8, a header row) with a name column and/or an id column
    variant   what differs between students (--vary): the digit a model learns (models of MNIST
              digits) and the seed (initial parameters, random draws, and with them a flow's data
              points; an mlp config's [training] seed, where the file leaves weights to draw).
              Student k of the roster (from 0) gets seed s + k and the k-th usable digit from d on,
              s and d being the options given (so the first student's exercise is the plain one).
    files     one workbook per student (NN_name.xlsx), its name on every sheet's header and in the
              recipe; key/NN_name.xlsx the solved workbook of each; manifest.csv: student, id,
              file, variant, key.  Written beside the target folder first, then moved into it.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from tracer import models
from tracer.checks.batch import parallel
from tracer.errors import TracerError, read_bytes, temporary_folder

MAX_STUDENTS = 1000
MAX_ROSTER = 1_000_000  # bytes
VARIES = ("digit", "seed")
MANIFEST = "manifest.csv"
KEY = "key"
# column headers, compared without accents, case or surrounding spaces
NAME_COLUMNS = ("name", "full name", "student", "student name", "nombre", "nombre completo", "nombre y apellidos",
                "apellidos y nombre", "estudiante", "alumno", "alumna", "alumno/a")
LAST_COLUMNS = ("last name", "surname", "family name", "apellido", "apellidos")
ID_COLUMNS = ("id", "student id", "student number", "email", "e-mail", "mail", "correo", "legajo", "matricula",
              "dni", "codigo", "code", "numero", "number", "carne", "carnet")


@dataclass(frozen=True)
class Student:
    name: str
    id: str = ""

    @property
    def label(self) -> str:
        """How files and messages name the student: the name, else the id."""
        return self.name or self.id

    def keys(self) -> dict:
        return {"name": self.name, "id": self.id}


def _plain(text: str) -> str:
    """A header as compared: no accents, lower case, single spaces."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(text.lower().replace("_", " ").split())


def read_roster(path) -> list[Student]:
    """The students of a roster CSV, in its order (blank rows skipped)."""
    path = Path(path)
    raw = read_bytes(path, str(path), "a roster (CSV)", MAX_ROSTER + 1)
    if len(raw) > MAX_ROSTER:
        raise TracerError(f"{path.name}: a roster must be at most {MAX_ROSTER:,} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TracerError(f"{path.name} is not UTF-8 text: save the roster as CSV UTF-8") from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:  # one column, or nothing to tell by: commas
        dialect = csv.excel
    rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text), dialect)]
    rows = [(n, row) for n, row in enumerate(rows, start=1) if any(row)]
    if not rows:
        raise TracerError(f"{path.name} is empty: a roster is a CSV with a header row (name and/or id) and a row per student")
    header = [_plain(h) for h in rows[0][1]]

    def column(names):
        return next((k for k, h in enumerate(header) if h in names), None)

    name, last, ident = column(NAME_COLUMNS), column(LAST_COLUMNS), column(ID_COLUMNS)
    name = last if name is None else name  # only a last-name column: the names
    if name == last:
        last = None
    if name is None and ident is None:
        raise TracerError(f"{path.name}: no name or id column in its header ({', '.join(rows[0][1]) or 'empty'}); "
                          "name a column 'name' (or 'nombre') or 'id'")
    students, seen, ids = [], {}, {}
    for n, row in rows[1:]:
        def cell(k):
            return row[k] if k is not None and k < len(row) else ""
        student = Student(" ".join(filter(None, (cell(name), cell(last)))), cell(ident))
        if not student.label:
            continue
        if student in seen:
            raise TracerError(f"{path.name}, line {n}: {student.label!r} is on the roster twice (line {seen[student]})")
        if student.id and student.id in ids:
            raise TracerError(f"{path.name}, line {n}: the id {student.id!r} is also on line {ids[student.id]}")
        seen[student], ids[student.id] = n, n
        students.append(student)
    if not students:
        raise TracerError(f"{path.name} names no student (a header row, then a row per student)")
    if len(students) > MAX_STUDENTS:
        raise TracerError(f"{path.name}: {len(students):,} students; a class has at most {MAX_STUDENTS:,}")
    return students


LETTERS = str.maketrans({"Ł": "L", "ł": "l", "Ø": "O", "ø": "o", "ß": "ss", "Æ": "AE", "æ": "ae", "Œ": "OE",
                         "œ": "oe", "Đ": "D", "đ": "d", "Þ": "Th", "þ": "th", "ı": "i"})  # no accent to drop


def slug(text: str) -> str:
    """A file name's part from a name: José Pérez -> jose_perez, Łukasz -> lukasz."""
    text = unicodedata.normalize("NFKD", text.translate(LETTERS)).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")[:40] or "student"


# --- variants -------------------------------------------------------------------------------------

def _drawn_weights(cfg) -> bool:
    """An mlp config that leaves some weights to its [training] seed."""
    return any(layer.weights is None for layer in cfg.spec.layers)


def choices(model) -> tuple[str, ...]:
    """What --vary can name for the model: the options among VARIES it has (an mlp: its file's seed)."""
    fields = {f.name for f in dataclasses.fields(model.Config)}
    return tuple(v for v in VARIES if v in fields or (v == "seed" and model.NAME == "mlp"))


def parse_vary(model, cfg, spec: str | None) -> tuple[str, ...]:
    """The options to vary: those `spec` names (comma-separated), or every one the model has."""
    can = choices(model)
    wanted = tuple(dict.fromkeys(s.strip() for s in (spec or ",".join(can)).split(",") if s.strip()))
    unknown = [v for v in wanted if v not in can]
    if unknown or not wanted:
        raise TracerError(f"--vary {spec!r}: {model.NAME} can vary {', '.join(can)}" if can else
                          f"--vary: nothing of {model.NAME} can vary between students")
    if model.NAME == "mlp" and not _drawn_weights(cfg):
        raise TracerError(f"--students: {cfg.spec.source} gives every weight, so nothing differs between students; "
                          "leave a layer's weights out of the file (they are then drawn from [training] seed)")
    return wanted


def _digits(model, cfg, count: int) -> list[int]:
    """`count` digits from --digit on, each with the batch the model takes from it (wrapping
    around the file; each digit once before any comes again)."""
    from tracer.data import mnist

    starts = mnist.starts_batch(getattr(cfg, "batch", 1), cfg.mnist)  # the strictest a model asks
    total = len(starts)
    usable = [d for d in ((cfg.digit + k) % total for k in range(total)) if starts[d]][:count]
    if not usable:
        raise TracerError(f"--vary digit: no digit of {cfg.mnist or 'the sample'} has a batch of {cfg.batch}")
    return [usable[k % len(usable)] for k in range(count)]


def variants(model, cfg, vary: tuple, count: int) -> list[dict]:
    """Each student's values of the varied options, in roster order."""
    base = cfg.spec.seed if model.NAME == "mlp" else getattr(cfg, "seed", 0)
    digits = _digits(model, cfg, count) if "digit" in vary else None
    return [{**({"digit": digits[k]} if digits else {}), **({"seed": base + k} if "seed" in vary else {})}
            for k in range(count)]


def describe(variant: dict) -> str:
    """digit 3, seed 2."""
    return ", ".join(f"{k} {v}" for k, v in variant.items())


def _seeded_copy(cfg, seed: int, folder: Path) -> Path:
    """A copy of an mlp config with [training] seed = `seed`, in `folder`, named as the original."""
    from tracer.data.mlp_config import key_lines, read

    name, text = read(cfg.config)
    lines = text.split("\n")
    where = key_lines(text)
    if ("training", "seed") in where:
        k = where[("training", "seed")] - 1
        lines[k] = re.sub(r"(seed\s*=\s*)[-+]?\d+", rf"\g<1>{seed}", lines[k], count=1)
    else:
        lines.insert(where[("training",)], f"seed = {seed}")
    path = folder / f"seed{seed}" / Path(name).name
    path.parent.mkdir()
    path.write_text("\n".join(lines), "utf-8")
    return path


# --- writing the class ----------------------------------------------------------------------------

@dataclass
class Written:
    """One student's exercise, as a worker wrote it."""

    fingerprint: str
    blank_blocks: int
    blank_cells: int
    cells: int


def _write_student(job) -> Written:
    """Trace one student's variant, write their exercise and (key) the solved workbook."""
    from tracer.checks.exercise import make
    from tracer.render.export import export
    from tracer.render.xlsx import write_xlsx

    model_name, cfg, shown, lang, blank, iterations, self_check, student, path, key = job
    model = models.MODELS[model_name]
    tape = models.trace(model, cfg, ".xlsx")
    layout, ex = make(tape, model, cfg, lang, blank, iterations, self_check, student, shown)
    cells = write_xlsx(layout, path)
    if key is not None:
        export(tape, dataclasses.asdict(cfg) | shown, key, lang)
    return Written(ex.recipe["fingerprint"], len(ex.blank), sum(t.value.size for t in ex.blank), cells)


@dataclass
class ClassExercises:
    folder: Path
    students: list
    files: list  # Path of each student's exercise, in roster order
    variants: list
    written: list  # Written
    key: bool

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST

    @property
    def key_folder(self) -> Path:
        return self.folder / KEY


def class_id(model_name: str, config: dict, lang: str, blank: str, iterations: str, vary: tuple,
             students: list) -> str:
    """What makes the class: the options every student shares and the roster."""
    common = {k: v for k, v in config.items() if k not in vary}
    text = json.dumps([model_name, common, lang, blank, iterations, vary, [s.keys() for s in students]],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def write_class(model, cfg, lang: str, blank: str, iterations: str, self_check: bool, students: list,
                folder, vary: str | None = None, key: bool = True, jobs: int | None = None,
                progress=None) -> ClassExercises:
    """One exercise per student in `folder` (see the module's docstring); `progress(1)` as each is
    written.  Nothing appears in `folder` unless every one was written and they all differ."""
    folder = Path(folder)
    if (folder.exists() and not folder.is_dir()) or folder.suffix.lower() == ".xlsx":
        raise TracerError(f"-o {folder}: with --students, -o is a folder (one workbook per student)")
    vary = parse_vary(model, cfg, vary)
    chosen = variants(model, cfg, vary, len(students))
    folder.mkdir(parents=True, exist_ok=True)
    shown = {"config": cfg.config} if model.NAME == "mlp" else {}
    the_class = class_id(model.NAME, dataclasses.asdict(cfg) | shown, lang, blank, iterations, vary, students)
    width = len(str(len(students)))
    names = [f"{k + 1:0{width}d}_{slug(s.label)}.xlsx" for k, s in enumerate(students)]
    with temporary_folder(".tracer-class-", folder) as staging, temporary_folder("tracer-configs-") as configs:
        (staging / KEY).mkdir()
        jobs_ = []
        for student, variant, name in zip(students, chosen, names):
            if model.NAME == "mlp":  # its seed is in the file: a copy of the file with the student's
                own = dataclasses.replace(cfg, config=str(_seeded_copy(cfg, variant["seed"], configs)))
            else:
                own = dataclasses.replace(cfg, **variant)
            recipe = {"student": student.keys(), "variant": variant, "class": the_class}
            jobs_.append((model.NAME, own, shown, lang, blank, iterations, self_check, recipe, staging / name,
                          staging / KEY / name if key else None))
        written = []
        for done in parallel(_write_student, jobs_, jobs):
            written.append(done)
            if progress:
                progress(1)
        seen = {}
        for name, w in zip(names, written):
            if w.fingerprint in seen:
                raise TracerError(f"--vary {','.join(vary)} gives {seen[w.fingerprint]} and {name} the same exercise; "
                                  "vary something else")
            seen[w.fingerprint] = name
        _write_manifest(staging / MANIFEST, students, names, chosen, vary, key)
        if key:
            (folder / KEY).mkdir(exist_ok=True)
        for name in [*names, *([f"{KEY}/{n}" for n in names] if key else []), MANIFEST]:
            (staging / name).replace(folder / name)
    return ClassExercises(folder, students, [folder / n for n in names], chosen, written, key)


def _write_manifest(path: Path, students, names, chosen, vary, key: bool) -> None:
    """student, id, file, variant, each varied option, key: one row per student."""
    from tracer.render.atomic import atomic_text

    with atomic_text(path) as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["student", "id", "file", "variant", *vary, "key"])
        for student, name, variant in zip(students, names, chosen):
            out.writerow([student.name, student.id, name, describe(variant), *(variant[v] for v in vary),
                          f"{KEY}/{name}" if key else ""])
