"""The study store: one SQLite database per study directory, written only by the study's driver.

Tables: `runs` (one row per finished run: what ran, on which models, with all its final metrics,
the teacher strength and its bucket), `history` (the per-epoch metrics of each finished run; epoch 0
is the student before transfer), `models` (the study's models and their metadata), `failures` (the
last error of runs that failed, retried next time), `plan` (the run keys of the study's current
definition: rows of runs from an earlier definition stay stored, ready to be reused, but are left
out of the aggregates) and `meta` (the study definition). A run and its
history are written in one transaction when the run has finished, and the run key is the primary
key, so a row is never duplicated and a killed driver never leaves half a run behind. The database
runs in WAL mode with full synchronisation: readers (`anyteach summary` on a running study) never
block the writer, and a committed run survives a kill at any moment.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import pandas as pd

from ..analysis.metrics import strength_bucket, teacher_strength
from ..core.errors import AnyteachError, RunFailed
from ..core.io import json_ready

STORE_FILE = "study.sqlite"
SCHEMA_VERSION = "1"

FINAL_METRICS: tuple[str, ...] = (
    "student_acc",
    "student_acc_before",
    "teacher_acc",
    "transfer_delta",
    "knowledge_gain",
    "knowledge_loss",
    "transfer_rate",
    "gain_count",
    "loss_count",
    "p_gain",
    "p_loss",
)
"""The engine's final metrics kept as columns (everything else stays in `final_json`)."""

AVAILABLE_METRICS: tuple[str, ...] = ("ensemble_acc", "ensemble_maxconf_acc", "ensemble_delta", "transfer_efficiency")
"""What a run could have taken (the student–teacher ensemble) and the share it took; NULL for runs
without a teacher and for runs written by an anyteach that did not measure them."""

RUN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_key", "TEXT PRIMARY KEY"),
    ("label", "TEXT NOT NULL"),
    ("method", "TEXT NOT NULL"),
    ("student", "TEXT NOT NULL"),
    ("teacher", "TEXT NOT NULL"),  # '' for teacher-free controls (NULLs would never collide in UNIQUE)
    ("seed", "INTEGER NOT NULL"),
    ("options", "TEXT NOT NULL"),
    ("data", "TEXT NOT NULL"),
    ("student_name", "TEXT"),
    ("teacher_name", "TEXT"),
    ("student_family", "TEXT"),
    ("student_params", "INTEGER"),
    ("teacher_family", "TEXT"),
    ("teacher_params", "INTEGER"),
    *((name, "INTEGER" if name.endswith("_count") else "REAL") for name in FINAL_METRICS),
    *((name, "REAL") for name in AVAILABLE_METRICS),
    ("teacher_strength", "REAL"),
    ("bucket", "TEXT"),
    ("complementary_knowledge", "REAL"),
    ("final_json", "TEXT"),
    ("run_dir", "TEXT"),
    ("seconds", "REAL"),
    ("finished_at", "REAL"),
)
RUN_FIELDS = tuple(name for name, _ in RUN_COLUMNS)
HISTORY_METRICS = FINAL_METRICS

TABLE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "runs": RUN_COLUMNS,
    "history": (
        ("run_key", "TEXT NOT NULL"),
        ("epoch", "INTEGER NOT NULL"),
        *((name, "INTEGER" if name.endswith("_count") else "REAL") for name in HISTORY_METRICS),
        ("metrics_json", "TEXT"),
    ),
    "models": (
        ("ref", "TEXT PRIMARY KEY"),
        ("name", "TEXT"),
        ("family", "TEXT"),
        ("num_params", "INTEGER"),
        ("eval_acc", "REAL"),
        ("identity", "TEXT"),
    ),
    "failures": (
        ("run_key", "TEXT NOT NULL"),
        ("error", "TEXT NOT NULL"),
        ("at", "REAL NOT NULL"),
        ("kind", "TEXT NOT NULL DEFAULT 'error'"),
        ("label", "TEXT"),
    ),
    "plan": (("run_key", "TEXT NOT NULL"), ("position", "INTEGER NOT NULL")),
}
"""Every table's columns as the current schema has them (`_schema`), for reading stores older ones wrote."""


def _default(kind: str) -> str:
    """The SQL value a missing column reads as: its declared default, else NULL."""
    return kind.split("DEFAULT", 1)[1].strip() if "DEFAULT" in kind else "NULL"


def _schema() -> str:
    runs = ",\n  ".join(f"{name} {kind}" for name, kind in RUN_COLUMNS)
    history = ",\n  ".join(f"{name} {'INTEGER' if name.endswith('_count') else 'REAL'}" for name in HISTORY_METRICS)
    return f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
  ref TEXT PRIMARY KEY, name TEXT, family TEXT, num_params INTEGER, eval_acc REAL, identity TEXT);
CREATE TABLE IF NOT EXISTS runs (
  {runs},
  UNIQUE (label, method, student, teacher, seed, options, data));
CREATE TABLE IF NOT EXISTS history (
  run_key TEXT NOT NULL REFERENCES runs(run_key),
  epoch INTEGER NOT NULL,
  {history},
  metrics_json TEXT,
  PRIMARY KEY (run_key, epoch));
CREATE TABLE IF NOT EXISTS failures (run_key TEXT PRIMARY KEY, error TEXT NOT NULL, at REAL NOT NULL,
  kind TEXT NOT NULL DEFAULT 'error', label TEXT);
CREATE TABLE IF NOT EXISTS plan (run_key TEXT PRIMARY KEY, position INTEGER NOT NULL);
"""


def store_path(study_dir: str | Path) -> Path:
    return Path(study_dir) / STORE_FILE


class StudyStore:
    """The SQLite store of one study directory. Use as a context manager.

    Args:
        study_dir: the study directory (created when `create` is true).
        create: create the database if it does not exist; otherwise a missing store is an error.
    """

    def __init__(self, study_dir: str | Path, create: bool = True):
        self.path = store_path(study_dir)
        self.read_only = not create
        if not self.path.exists():
            if not create:
                raise AnyteachError(
                    f"{study_dir} is not a study directory (no {STORE_FILE}); run `anyteach study` into it first"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _create_store(self.path)
        try:
            if create:
                self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
                self._check_version()  # before anything is written: a store of another schema is left as it is
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=FULL")
                self.conn.execute("PRAGMA foreign_keys=ON")
                self.conn.executescript(_schema())
                self._migrate()
                self._check_schema()
            else:  # readers never write: a read-only or shared study directory can be summarised
                self.conn = _connect_read_only(self.path)
                self._check_schema()
        except sqlite3.DatabaseError as e:
            if getattr(self, "conn", None) is not None:
                self.conn.close()
            raise _store_error(e, self.path, "open") from e
        except AnyteachError:
            self.conn.close()
            raise

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}

    def _migrate(self) -> None:
        """Columns added since schema 1 (a store written by an older anyteach gains them): every column of the
        current schema a table lacks is added, empty (NULL) for the rows already there."""
        models = self._columns("models")
        if "identity" not in models:
            self.conn.execute("ALTER TABLE models ADD COLUMN identity TEXT")
        runs = self._columns("runs")
        for name, kind in RUN_COLUMNS:
            if name not in runs and "NOT NULL" not in kind and "PRIMARY" not in kind:
                self.conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
        history = self._columns("history")
        for name in (*HISTORY_METRICS, "metrics_json"):
            if name not in history:
                kind = "TEXT" if name == "metrics_json" else "INTEGER" if name.endswith("_count") else "REAL"
                self.conn.execute(f"ALTER TABLE history ADD COLUMN {name} {kind}")
        columns = self._columns("failures")
        if "kind" not in columns:
            self.conn.execute("ALTER TABLE failures ADD COLUMN kind TEXT NOT NULL DEFAULT 'error'")
        if "label" not in columns:
            self.conn.execute("ALTER TABLE failures ADD COLUMN label TEXT")

    def _check_version(self) -> None:
        """A store that says it has another schema is refused (one that says nothing is checked later)."""
        has_meta = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() if has_meta else None
        if row is not None and row[0] != SCHEMA_VERSION:
            raise AnyteachError(
                f"{self.path} has store schema {row[0]!r}, which this anyteach does not read (it reads and writes "
                f"schema {SCHEMA_VERSION}); summarise it with the anyteach that wrote it, or run the study again "
                "into a new directory"
            )

    def _check_schema(self) -> None:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.OperationalError as e:  # an empty or foreign database
            raise AnyteachError(
                f"{self.path} is not an anyteach study store ({e}); run `anyteach study` into a new directory"
            ) from e
        if row is None and self.read_only:
            raise AnyteachError(f"{self.path} is not an anyteach study store (no schema)")
        if row is None:
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            raise AnyteachError(
                f"{self.path} has store schema {row[0]!r}, which this anyteach does not read (it reads and writes "
                f"schema {SCHEMA_VERSION}); summarise it with the anyteach that wrote it, or run the study again "
                "into a new directory"
            )
        self._complete()

    def _complete(self) -> None:
        """Every table and column of the current schema, as the queries below read them. A writer has added what
        it could (`_migrate`); for a reader of a store an older anyteach wrote, a missing optional table (`plan`:
        every stored run is then current) or column (empty) is supplied by a temporary view in memory, leaving
        the file as it is. A store that lacks what every run has (the `runs` table, a run's label) is refused.

        Raises:
            AnyteachError: a table or column no anyteach store ever lacked, naming it.
        """
        for table, columns in TABLE_COLUMNS.items():
            present = self._columns(table)
            if not present and table in ("runs", "history"):
                raise AnyteachError(
                    f"{self.path} is not a complete anyteach study store (no table {table}); run the study again "
                    "into a new directory"
                )
            missing = [(name, kind) for name, kind in columns if name not in present]
            required = [name for name, kind in missing if "NOT NULL" in kind and "DEFAULT" not in kind]
            if present and required:
                raise AnyteachError(
                    f"{self.path} is not a complete anyteach study store (table {table} has no column "
                    f"{', '.join(required)}); run the study again into a new directory"
                )
            if not self.read_only:  # the writer created and migrated everything before; nothing is supplied
                continue
            if not present:
                declared = ", ".join(f"{name} {kind.split()[0]}" for name, kind in columns)
                self.conn.execute(f"CREATE TEMP TABLE {table} ({declared})")
            elif missing:
                added = ", ".join(f"{_default(kind)} AS {name}" for name, kind in missing)
                self.conn.execute(f"CREATE TEMP VIEW {table} AS SELECT *, {added} FROM main.{table}")

    def __enter__(self) -> StudyStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if not self.read_only:
            try:  # leave one self-contained file behind (readers then need no -wal / -shm files)
                self.conn.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.OperationalError:  # a reader holds it: it stays in WAL mode, which is fine
                pass
        self.conn.close()

    # -- writing (the driver only) -------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction():
            self.conn.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value)
            )

    def add_models(self, models: Iterable[Mapping[str, Any]]) -> None:
        """Insert or update the study's models (`ref, name, family, num_params, eval_acc, identity`); a
        model whose content identity changed loses its stored eval accuracy."""
        with self._transaction():
            for m in models:
                self.conn.execute(
                    "INSERT INTO models (ref, name, family, num_params, eval_acc, identity) VALUES (:ref, :name, "
                    ":family, :num_params, :eval_acc, :identity) ON CONFLICT(ref) DO UPDATE SET name=excluded.name, "
                    "family=excluded.family, num_params=excluded.num_params, eval_acc=CASE WHEN "
                    "models.identity IS excluded.identity THEN COALESCE(excluded.eval_acc, models.eval_acc) ELSE "
                    "excluded.eval_acc END, identity=excluded.identity",
                    {"identity": None, **dict(m)},
                )

    def identities(self) -> dict[str, str]:
        """The content identities the study last ran with: model ref -> weights digest, and
        `data:<ref>` -> the dataset's identity."""
        out = {ref: identity for ref, identity in self.conn.execute("SELECT ref, identity FROM models") if identity}
        stored = self.meta("data_identities")
        if stored:
            out.update({f"data:{ref}": identity for ref, identity in json.loads(stored).items()})
        return out

    def add_run(self, row: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> bool:
        """Write one finished run and its history in one transaction.

        Returns:
            False when the run was already in the store (nothing is written), else True.
        """
        missing = [f for f in RUN_FIELDS if f not in row]
        if missing:
            raise ValueError(f"run row lacks {missing}")
        with self._transaction():
            if self.conn.execute("SELECT 1 FROM runs WHERE run_key=?", (row["run_key"],)).fetchone():
                return False
            # the same run over other contents (a model file overwritten, images edited): its old row
            # describes what no longer exists, and the new one takes its place
            same = "label=? AND method=? AND student=? AND teacher=? AND seed=? AND options=? AND data=?"
            values = [row[f] for f in ("label", "method", "student", "teacher", "seed", "options", "data")]
            self.conn.execute(f"DELETE FROM history WHERE run_key IN (SELECT run_key FROM runs WHERE {same})", values)
            self.conn.execute(f"DELETE FROM runs WHERE {same}", values)
            cur = self.conn.execute(
                f"INSERT INTO runs ({', '.join(RUN_FIELDS)}) VALUES ({', '.join('?' * len(RUN_FIELDS))}) "
                "ON CONFLICT DO NOTHING",
                [row[f] for f in RUN_FIELDS],
            )
            if cur.rowcount == 0:
                return False
            columns = ("run_key", "epoch", *HISTORY_METRICS, "metrics_json")
            self.conn.executemany(
                f"INSERT INTO history ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                [
                    (
                        row["run_key"],
                        int(h["epoch"]),
                        *(_number(h.get(m)) for m in HISTORY_METRICS),
                        json.dumps(json_ready(h)),
                    )
                    for h in history
                ],
            )
            self.conn.execute("DELETE FROM failures WHERE run_key=?", (row["run_key"],))
        return True

    def set_plan(self, run_keys: Sequence[str]) -> None:
        """Record the runs of the study's current definition (replacing the previous plan).

        Rows of runs outside the plan stay in the store (a later definition that includes them
        again reuses them) but `runs()` and the aggregates leave them out.
        """
        with self._transaction():
            self.conn.execute("DELETE FROM plan")
            self.conn.executemany("INSERT INTO plan VALUES (?, ?)", [(k, i) for i, k in enumerate(run_keys)])

    def add_failure(self, run_key: str, error: str, kind: str = "error", label: str | None = None) -> None:
        """Record the last failure of a run: `kind` is `diverged`, `corrupt-checkpoint` or `error`;
        `label` is the method as the study reports it."""
        with self._transaction():
            self.conn.execute(
                "INSERT INTO failures (run_key, error, at, kind, label) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(run_key) DO UPDATE SET error=excluded.error, at=excluded.at, "
                "kind=excluded.kind, label=excluded.label",
                (run_key, error, time.time(), kind, label),
            )

    def failure_kinds(self) -> dict[str, str]:
        """Run key -> kind of its last failure, for runs that failed and have not finished since."""
        return dict(self.conn.execute("SELECT run_key, kind FROM failures"))

    def _transaction(self):
        return _Transaction(self.conn, self.path)

    # -- reading -----------------------------------------------------------------------------

    def finished_keys(self) -> set[str]:
        return {k for (k,) in self.conn.execute("SELECT run_key FROM runs")}

    def definition(self) -> dict[str, Any]:
        """The study definition the store last ran (`meta.spec`) as a dict; empty when there is none or it is
        damaged (it only names and orders what the stored runs say themselves)."""
        text = self.meta("spec")
        try:
            spec = json.loads(text) if text else {}
        except ValueError:
            return {}
        return spec if isinstance(spec, dict) else {}

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def _in_plan(self, alias: str) -> str:
        """SQL condition: the run is in the current plan (or there is no plan at all)."""
        return f"({alias}.run_key IN (SELECT run_key FROM plan) OR NOT EXISTS (SELECT 1 FROM plan))"

    def runs(self, current: bool = True) -> pd.DataFrame:
        """Finished runs, one row each, in the order they finished, with every column of `RUN_COLUMNS` (empty
        where a store written by an older anyteach lacks it).

        Args:
            current: only the runs of the study's current definition (`set_plan`); False: all.
        """
        where = f"WHERE {self._in_plan('r')}" if current else ""
        order = "ORDER BY r.finished_at, r.run_key" if "finished_at" in self._columns("runs") else "ORDER BY r.run_key"
        runs = pd.read_sql_query(f"SELECT r.* FROM runs r {where} {order}", self.conn)
        return runs.reindex(columns=[*RUN_FIELDS, *(c for c in runs.columns if c not in RUN_FIELDS)])

    def history(self, current: bool = True) -> pd.DataFrame:
        """Per-epoch metrics of the finished runs (with the run's label, student and teacher)."""
        where = f"WHERE {self._in_plan('r')}" if current else ""
        return pd.read_sql_query(
            "SELECT h.*, r.label, r.method, r.student, r.teacher, r.seed, r.bucket FROM history h "
            f"JOIN runs r USING (run_key) {where} ORDER BY r.finished_at, h.run_key, h.epoch",
            self.conn,
        )

    def stale_runs(self) -> int:
        """Stored runs that are not part of the current definition."""
        return self.conn.execute(f"SELECT COUNT(*) FROM runs r WHERE NOT {self._in_plan('r')}").fetchone()[0]

    def planned(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM plan").fetchone()[0]

    def models(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM models ORDER BY ref", self.conn)

    def failures(self, current: bool = True) -> pd.DataFrame:
        """The last error of runs that failed and have not finished since."""
        where = f"WHERE {self._in_plan('f')}" if current else ""
        return pd.read_sql_query(f"SELECT f.* FROM failures f {where} ORDER BY f.at", self.conn)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that never writes (no WAL switch, no journal): for `summary` and `report`.

    A store in a read-only directory cannot get the WAL index SQLite wants; then the file is read as
    immutable (safe: nothing writes a read-only directory).
    """
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60, isolation_level=None)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (the connection is in autocommit mode).
    A write that fails for want of space (a full disk, a file-size limit) is rolled back, so the store
    keeps everything committed before it, and becomes one `RunFailed` line naming the store."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn, self.path = conn, path

    def __enter__(self) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise _store_error(e, self.path, "write") from e

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        try:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        except sqlite3.OperationalError as e:
            if self.conn.in_transaction:
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error:  # SQLite rolled back itself
                    pass
            raise _store_error(e, self.path, "write") from e
        if isinstance(exc, sqlite3.OperationalError):
            raise _store_error(exc, self.path, "write") from exc
        return False


_SPACE_ERRORS = (getattr(sqlite3, "SQLITE_IOERR", 10), getattr(sqlite3, "SQLITE_FULL", 13))  # named from Python 3.11


def _store_error(error: sqlite3.Error, path: Path, doing: str) -> AnyteachError:
    """One line for a SQLite error on the store: no space to write (a full disk, a file-size limit)
    is a failed run (exit 1), anything else a store that is not one (exit 2)."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _SPACE_ERRORS:
        return RunFailed(
            f"cannot {doing} the study store {path}: {error} (the disk is full or a file-size limit was "
            "reached; every run stored before is kept, and running the study again resumes)"
        )
    remedy = "; it is damaged or not a study store: run the study again into a new directory" if doing == "open" else ""
    return AnyteachError(f"cannot {doing} the study store {path}: {error}{remedy}")


def _create_store(path: Path) -> None:
    """Create a store with its whole schema beside `path`, then rename it into place: a store that
    exists is never schema-less, whatever fails while it is made."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.executescript(_schema())
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        finally:
            conn.close()
        os.replace(tmp, path)
    except sqlite3.DatabaseError as e:
        raise _store_error(e, path, "create") from e
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            leftover.unlink(missing_ok=True)


def _number(value: Any) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and math.isnan(value) else value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def run_row(
    run: Any, outcome: Mapping[str, Any], names: Mapping[str, str], models: Mapping[str, Any]
) -> dict[str, Any]:
    """The store row of one finished run.

    Args:
        run: the `RunSpec`.
        outcome: the worker's result: `final` (the engine's final metrics), `run_dir`, `seconds`,
            `complementary_knowledge`.
        names: model reference -> name.
        models: model reference -> `ModelEntry` (family, parameter count).
    """
    final = dict(outcome["final"])
    missing = [m for m in FINAL_METRICS if m not in final]
    if missing:
        raise AnyteachError(f"run {run.key}: the transfer engine returned no {', '.join(missing)}")
    student, teacher = models[run.student], models.get(run.teacher) if run.teacher else None
    strength = bucket = None
    if teacher is not None:
        strength = teacher_strength(final["teacher_acc"], final["student_acc_before"])
        bucket = strength_bucket(strength)
    row: dict[str, Any] = {
        "run_key": run.key,
        "label": run.label,
        "method": run.method,
        "student": run.student,
        "teacher": run.teacher or "",
        "seed": run.seed,
        "options": run.options,
        "data": run.data,
        "student_name": names[run.student],
        "teacher_name": names.get(run.teacher, "") if run.teacher else "",
        "student_family": student.family,
        "student_params": student.num_params,
        "teacher_family": teacher.family if teacher else None,
        "teacher_params": teacher.num_params if teacher else None,
        **{m: _number(final[m]) for m in FINAL_METRICS},
        **{m: _number(final.get(m)) for m in AVAILABLE_METRICS},
        "teacher_strength": strength,
        "bucket": bucket,
        "complementary_knowledge": _number(outcome.get("complementary_knowledge")),
        "final_json": json.dumps(json_ready(final)),
        "run_dir": str(outcome.get("run_dir", "")),
        "seconds": float(outcome.get("seconds", 0.0)),
        "finished_at": time.time(),
    }
    return row


def load_runs(study_dir: str | Path) -> pd.DataFrame:
    """The finished runs of a study directory as a DataFrame (see `RUN_COLUMNS`)."""
    with StudyStore(study_dir, create=False) as store:
        return store.runs()


__all__ = [
    "AVAILABLE_METRICS",
    "FINAL_METRICS",
    "RUN_COLUMNS",
    "STORE_FILE",
    "StudyStore",
    "load_runs",
    "run_row",
    "store_path",
]
