"""Loading runs: tidy CSVs, `result.json` files of `cffaudit train`, and run stores.

Everything becomes one DataFrame with one row per run, the shape the statistics take.
`load_runs` is the single entry point, so that the run store of the sweep code can be
plugged in at one place.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import pandas as pd

from cffaudit.config import NON_RESULT_KEYS, RESULT_NAME, added_field_defaults, flatten_paths
from cffaudit.report.source_columns import SEED_SOURCES, source_columns

PathLike = Union[str, Path]

#: Columns every loaded frame has, whatever the input format.
RUN_COLUMNS = (
    "dataset",
    "experiment",
    "margin_schedule",
    "margin",
    "stability",
    "augmentation",
    "seed",
    "test_acc",
    "status",
    "run_id",
    "source",
)

#: Columns that, with the compared factors and the seed, define which runs are replicates.
DESIGN_COLUMNS = ("dataset", "experiment", "arm", "margin_schedule", "augmentation", "locality")

#: The factor columns of the run table and the config path each is read from. With a
#: spec's short names (`experiments.spec.FACTOR_ALIASES`) this is the one map from the
#: ways a factor is named (column, short name, config path) to its column: `column_of`.
FACTOR_COLUMN_PATHS = {
    "dataset": "data.dataset",
    "margin_schedule": "loss.margin_schedule",
    "margin": "loss.margin",
    "stability": "loss.stability",
    "augmentation": "data.augment",
    "locality": "stage1.locality",
}
_COLUMN_OF_PATH = {path: column for column, path in FACTOR_COLUMN_PATHS.items()}
# A spec varies one source of randomness by its config path (seeds.init); the run table
# holds it as seed_init (`source_columns`).
_COLUMN_OF_PATH.update({f"seeds.{source}": f"seed_{source}" for source in SEED_SOURCES})

# Config keys that never make two runs different experiments: the seed is the replicate
# index, what cannot change a result (NON_RESULT_KEYS: data location, device, CPU
# allocator) and worker counts change speed only, and the factor columns are
# represented explicitly.
_IGNORED_CONFIG_KEYS = {
    *NON_RESULT_KEYS,
    *FACTOR_COLUMN_PATHS.values(),
    "seed",
    "loss.m0",  # m0, mL and the margins follow from the margin schedule, a factor column
    "loss.mL",
    "loss.margins",
    "stage1.step_order",  # per-block and fused stepping give the same updates (SPEC.md)
}
_IGNORED_CONFIG_WORDS = ("dir", "root", "path", "workers", "log", "device", "out", "checkpoint", "resume", "compile")


class RunLoadError(ValueError):
    """An input could not be read as runs (bad file, unknown format, missing columns)."""


def column_of(name: str) -> str:
    """The run table's column for a factor as a spec, --compare, --factor or --where names
    it: a column (`augmentation`), a spec's short name (`augment`) or a config path
    (`data.augment`). Other names are returned unchanged."""
    from cffaudit.experiments.spec import FACTOR_ALIASES

    return _COLUMN_OF_PATH.get(FACTOR_ALIASES.get(name, name), name)


def _config_value(config: dict, path: str) -> Any:
    """The value at a dotted path of a nested config, None where any part is missing."""
    node: Any = config
    for key in path.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _design_config(config: dict) -> dict[str, Any]:
    """Dotted config keys that can make runs different experiments (see _IGNORED_*)."""
    keep = {}
    # A result stored before a field was added was trained with its default.
    for key, value in {**added_field_defaults(), **flatten_paths(config)}.items():
        if key in _IGNORED_CONFIG_KEYS or key.split(".")[0] == "seeds":  # per-source seeds index replicates, as `seed` does
            continue
        if any(word in part.lower() for part in key.split(".") for word in _IGNORED_CONFIG_WORDS):
            continue
        keep[key] = json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value
    return keep


def _final_layer_records(history: Sequence[dict]) -> list[dict]:
    stage1 = [h for h in history or [] if h.get("stage") == 1 and isinstance(h.get("layers"), list)]
    if not stage1:
        return []
    last = max(stage1, key=lambda h: h.get("epoch", -1))
    return list(last["layers"])


def flatten_result(result: dict, source: PathLike = "") -> dict:
    """One row of the runs frame from a parsed `result.json`.

    CAR stays a fraction in [0, 1] as written by training (`car_l<k>`); the final stage-1
    epoch's per-layer CAR and gradient norm become `car_l<k>` and `grad_norm_l<k>`. The
    sources-of-variance columns (`untrained_test_acc`, `stage1_gain`, `probe_test_accs`,
    `seed_<source>`, `car_l0_final`, `car_l0_mean`, `grad_norm_l0_final`) come from
    `source_columns.source_columns`.

    Args:
        result: The parsed JSON document.
        source: Where it was read from, kept in the `source` column.

    Raises:
        RunLoadError: If the document is not a result (no `status` or `config`).
    """
    if not isinstance(result, dict) or "status" not in result or not isinstance(result.get("config"), dict):
        raise RunLoadError(f"{source}: not a cffaudit result.json (needs 'status' and 'config')")
    cfg = result["config"]
    acc = result.get("test_acc")
    added = added_field_defaults()  # a result stored before a field was added has its default
    values = {
        **{column: _config_value(cfg, path) if _config_value(cfg, path) is not None else added.get(path)
           for column, path in FACTOR_COLUMN_PATHS.items()},
        "experiment": result.get("experiment"),
        "seed": cfg.get("seed"),
        "test_acc": float(acc) if isinstance(acc, (int, float)) else math.nan,
        "status": result.get("status"),
        "run_id": result.get("run_id"),
        "source": str(source),
    }
    # Factor columns outside RUN_COLUMNS (added later) follow them.
    row: dict[str, Any] = {column: values[column] for column in (*RUN_COLUMNS, *FACTOR_COLUMN_PATHS)}
    row["error"] = result.get("error")
    if result.get("arm") is not None:  # a run of a spec with arms, read through its store
        row["arm"] = result["arm"]
    row["best_val_acc"] = result.get("best_val_acc")
    row.update(source_columns(result, row["test_acc"]))
    # Where and how the run was trained. A run id names the experiment, not the hardware,
    # so one design can hold runs from a CPU (float32) and a GPU (bf16 autocast, CUDA
    # random streams); the analysis notes such a mix.
    runtime = result.get("runtime") if isinstance(result.get("runtime"), dict) else {}
    device = runtime.get("device")
    row["device"] = str(device).split(":")[0] if device else None
    row["precision"] = runtime.get("precision")
    for rec in _final_layer_records(result.get("history") or []):
        k = rec.get("layer")
        if k is None:
            continue
        for name in ("car", "grad_norm"):
            if rec.get(name) is not None:
                row[f"{name}_l{int(k)}"] = float(rec[name])
    for key, value in _design_config(cfg).items():
        row[f"cfg.{key}"] = value
    return row


def history_records(result: dict, source: PathLike = "") -> list[dict]:
    """Per-epoch, per-layer stage-1 records of one result (long format) for over-epoch plots.

    `source` (the file read) tells runs apart where a result.json carries no run id (one
    read from a folder rather than through the store's database)."""
    cfg = result.get("config") or {}
    base = {
        "run_id": result.get("run_id"),
        "source": str(source),
        **{c: _config_value(cfg, FACTOR_COLUMN_PATHS[c]) for c in ("dataset", "margin", "stability", "margin_schedule")},
        "seed": cfg.get("seed"),
        "status": result.get("status"),
    }
    out = []
    for h in result.get("history") or []:
        if h.get("stage") != 1:
            continue
        for rec in h.get("layers") or []:
            out.append({**base, "epoch": h.get("epoch"), **{k: rec.get(k) for k in ("layer", "loss", "car", "grad_norm")}})
    return out


def _result_files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from sorted(path.rglob(RESULT_NAME))
    else:
        yield path


def _store_files(store: Path) -> Iterator[Path]:
    """Result files of a folder of runs without a sweep database (`runs/<id>/result.json`)."""
    runs = store / "runs"
    yield from sorted((runs if runs.is_dir() else store).rglob(RESULT_NAME))


def store_results(store: PathLike) -> Iterator[tuple[dict, str]]:
    """Results of a run store, each labelled with the cell of the spec it was run for.

    A sweep store keeps each run's canonical config: a subtract run of the dose-response
    spec (low schedule) is stored with the standard schedule, because the schedule cannot
    change a gradient-neutral run. Analysing it by that config would put it in another
    design than the clamp runs it was run against, so its config is rebuilt from the
    spec's base and the run's factor levels: the condition it stands for. A run shared by
    several cells yields one record per cell. For a spec with arms, `arm` names the arms
    holding the cell (`ExperimentSpec.arms_of`, joined by '|'). A folder without a sweep
    database is read as `runs/<id>/result.json` files.
    """
    store = Path(store)
    if not store.is_dir():
        raise RunLoadError(f"--store {store}: not a directory")
    from cffaudit.experiments.store import RunStore, load_store_results

    if not RunStore.exists_at(store):
        for f in _store_files(store):
            yield _read_json(f), str(f)
        return
    from cffaudit.experiments.spec import ExperimentSpec

    try:
        spec = ExperimentSpec.load(store / "spec.yaml")
        records = load_store_results(store, status=None)
    except (OSError, ValueError) as exc:
        raise RunLoadError(f"--store {store}: {exc}") from None
    base = spec.base_config()
    for rec in records:
        seed = rec.get("seed")
        for levels in rec.get("conditions") or [{}]:
            updates = {spec.factor_paths[k]: v for k, v in levels.items()}
            requested = base.override({**updates, "seed": seed}).resolved()
            arm = {"arm": "|".join(spec.arms_of(levels))} if spec.arms else {}
            yield {**rec, "config": requested, "experiment": spec.name, **arm}, str(rec.get("result_path"))


def store_other_factor(store: PathLike, compare: str) -> Optional[str]:
    """The factor of a run store's spec other than `compare`, when the spec has exactly
    one other; None for a folder without a sweep database or an unreadable store (the
    loading of its runs reports what is wrong with it)."""
    from cffaudit.experiments.store import RunStore, StoreError, store_factors

    if not RunStore.exists_at(store):
        return None

    try:
        factors = store_factors(store)
    except (StoreError, OSError, ValueError):
        return None
    others = [f for f in factors if column_of(f) != column_of(compare)]
    return others[0] if len(others) == 1 else None


def paper_runs() -> pd.DataFrame:
    """The seed paper's per-seed accuracies (`cffaudit.paperdata`) as a run table: every
    run finished, with ids `paper:<row>`."""
    from cffaudit import paperdata

    frame = paperdata.per_seed_accuracy()
    return frame.assign(status="done", run_id=[f"paper:{i}" for i in range(len(frame))], source="cffaudit.paperdata")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunLoadError(f"{path}: cannot read JSON ({exc})") from None


def read_tidy_csv(path: PathLike) -> pd.DataFrame:
    """Read a tidy CSV with one row per run (the paper-data format).

    Required columns: dataset, margin, seed, test_acc. Missing optional design columns
    are added empty; `status` defaults to 'done'. An empty stability means the factor
    does not apply to that run. Each run keeps its row of the file in `csv_row` (the header
    is row 1), and the finished runs are checked (`inputs.check_csv_runs`).

    Raises:
        RunLoadError: If the file cannot be read, is empty or lacks a required column.
        ValueError: If a finished run's accuracy or seed is not a valid number, or a run
            appears twice; the message names the file, row and column.
    """
    from cffaudit.report.inputs import ROW_COLUMN, check_csv_runs

    required = ["dataset", "margin", "seed", "test_acc"]
    try:
        # Blank lines are kept while rows are numbered, so that row k is line k of the file.
        frame = pd.read_csv(path, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise RunLoadError(f"{path}: row 1: the file is empty; a tidy CSV starts with a header row naming "
                           f"at least the columns {', '.join(required)}") from None
    except pd.errors.ParserError as exc:
        raise RunLoadError(f"{path}: cannot read CSV ({str(exc).strip()}); every row needs as many "
                           f"comma-separated fields as the header (row 1) has columns") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunLoadError(f"{path}: cannot read CSV ({exc})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise RunLoadError(f"{path}: row 1 (the header) lacks column(s) {missing}; it has {list(frame.columns)}")
    if "status" not in frame.columns:
        frame["status"] = "done"
    frame[ROW_COLUMN] = range(2, len(frame) + 2)
    kept = frame.drop(columns=["status", ROW_COLUMN]).notna().any(axis=1)
    if not kept.all():  # blank lines, read as rows of NaN, made the integer seeds floats
        frame = frame[kept].reset_index(drop=True)
        seeds = [c for c in frame.columns if (c == "seed" or c.startswith("seed_")) and frame[c].dtype.kind == "f"]
        frame = frame.astype({c: "int64" for c in seeds if frame[c].notna().all() and (frame[c] % 1 == 0).all()})
    if "run_id" not in frame.columns:
        frame["run_id"] = [f"{Path(path).name}:{i}" for i in frame[ROW_COLUMN]]
    frame["source"] = str(path)
    check_csv_runs(frame, Path(path))
    # Checked above: numbers from here on (pandas reads a column with one bad cell as text).
    done = frame["status"].astype(str) == "done"
    frame["test_acc"] = pd.to_numeric(frame["test_acc"].where(done), errors="coerce")
    return frame


def _iter_inputs(paths: Iterable[PathLike], store: Optional[PathLike]) -> Iterator[tuple[Path, str]]:
    seen: set[Path] = set()
    for path, kind in _iter_inputs_raw(paths, store):
        key = path.resolve()
        if key in seen:  # a directory and a file inside it, or a store and its folder
            continue
        seen.add(key)
        yield path, kind


def _iter_inputs_raw(paths: Iterable[PathLike], store: Optional[PathLike]) -> Iterator[tuple[Path, str]]:
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise RunLoadError(f"{path}: no such file or directory")
        if path.is_file() and path.suffix.lower() == ".csv":
            yield path, "csv"
            continue
        found = False
        for f in _result_files(path):
            found = True
            yield f, "json"
        if not found:
            raise RunLoadError(f"{path}: no result.json found under this directory")
    if store is not None:
        from cffaudit.experiments.store import RunStore

        if RunStore.exists_at(store):
            yield Path(store), "store"
        elif not Path(store).is_dir():
            raise RunLoadError(f"--store {store}: not a directory")
        else:
            for f in _store_files(Path(store)):
                yield f, "json"


def load_runs(paths: Sequence[PathLike], store: Optional[PathLike] = None) -> pd.DataFrame:
    """Load runs from tidy CSVs, result.json files or directories, and a run store.
    (`load_runs_with_histories` reads their diagnostics in the same pass.)

    Failed and unfinished runs are kept (with their `status`) so that callers can report
    how many were excluded; statistics use rows with status 'done' only.

    Args:
        paths: CSV files, `result.json` files, or directories searched recursively for
            `result.json`.
        store: A run store directory (`runs/<run_id>/result.json`), or None.

    Returns:
        One row per run with at least `RUN_COLUMNS`; JSON runs add `car_l<k>`,
        `grad_norm_l<k>` and `cfg.<key>` columns.

    Raises:
        RunLoadError: If a path does not exist, a file cannot be parsed, or nothing was found.
    """
    return load_runs_with_histories(paths, store, histories=False)[0]


def load_runs_with_histories(paths: Sequence[PathLike], store: Optional[PathLike] = None, *,
                             histories: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`load_runs` and `load_run_histories` in one pass: every result is read once.

    Raises:
        RunLoadError: as `load_runs`.
        ValueError: when one finished run is read from two files (`inputs.refuse_repeated_runs`).
    """
    from cffaudit.report.inputs import refuse_repeated_runs

    frames = []
    rows: list[dict] = []
    records: list[dict] = []
    read: list[tuple[dict, Any]] = []
    inputs = list(_iter_inputs(paths, store))
    files = {p.resolve() for p, kind in inputs if kind == "json"}
    for path, kind in inputs:
        if kind == "csv":
            frames.append(read_tidy_csv(path))
            continue
        if kind == "store":
            # a result given both as a file and through the store counts once
            results = [(r, s) for r, s in store_results(path) if Path(s).resolve() not in files]
        else:
            results = [(_read_json(path), path)]
        read.extend(results)
        for result, source in results:
            rows.append(flatten_result(result, source))
            if histories:
                records.extend(history_records(result, source))
    refuse_repeated_runs(read)
    if rows:
        frames.append(pd.DataFrame(rows))
    if not frames:
        raise RunLoadError("no runs: give CSV files, result.json files or directories, or --store")
    frame = pd.concat(frames, ignore_index=True, sort=False)
    for col in RUN_COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    return frame, pd.DataFrame(records)


def load_run_histories(paths: Sequence[PathLike], store: Optional[PathLike] = None) -> pd.DataFrame:
    """Per-epoch, per-layer stage-1 diagnostics of every JSON run (CSV inputs have none).

    Returns:
        Columns run_id, source, dataset, margin, stability, margin_schedule, seed, status,
        epoch, layer, loss, car (fraction), grad_norm; empty when no history is available.

    Raises:
        RunLoadError: as `load_runs`, whose pass over the inputs this is.
    """
    return load_runs_with_histories(paths, store)[1]


def design_config_columns(frame: pd.DataFrame) -> list[str]:
    """The `cfg.*` columns whose value differs between finished runs (they split designs)."""
    done = frame[frame["status"] == "done"] if "status" in frame.columns else frame
    cols = []
    for c in frame.columns:
        if c.startswith("cfg.") and done[c].astype(str).nunique(dropna=False) > 1:
            cols.append(c)
    return cols
