"""The Matryoshka training programme: recipes x seeds, standard control vs Matryoshka, scored per
width on an STS-B split, with seed spreads, paired-bootstrap intervals and the retrieval side.

* :func:`search_recipes` tries several :class:`Recipe` s and scores them on ``stsb/dev.tsv``
  only; every recipe and its dev scores go into the report, with the one chosen by the rule
  of :func:`selection_score`.
* :func:`run_programme` with ``split="test"`` runs ONE recipe (the chosen one) for the final
  table: the test split is read once, for that table, never to choose (more than one recipe on
  test is refused).

For each recipe and seed it trains the standard control (the base loss) and the Matryoshka model
with everything else identical, encodes the split's sentences once per model, and keeps the
cosine of every pair at every width (``cosines.npz``), so that the intervals can be recomputed
from the files. Results are written to ``programme.json`` after every run (a long programme can
be inspected while it runs) and rendered to Markdown from ``templates/programme.md``.

>>> from matryo_fast.programme import Recipe, run_programme
>>> recipe = Recipe("cmnrl-256", {"epochs": 1.0, "max_steps": None, "batch_size": 256,
...                               "mini_batch_size": 32})
>>> run_programme([recipe], seeds=[1, 2, 3], split="test", output_dir="runs/final")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import numpy.typing as npt

from matryo_fast._extras import default_data_dir
from matryo_fast._metrics import correlations, recall_per_query
from matryo_fast._validate import validate_dims
from matryo_fast.files import write_atomic
from matryo_fast.intervals import Interval, aggregate_seeds, paired_bootstrap
from matryo_fast.reproduce import prepare_output
from matryo_fast.training import TrainConfig, train

__all__ = [
    "KINDS",
    "SPLITS",
    "ProgrammeResult",
    "Recipe",
    "load_recipes",
    "partner_retrieval",
    "run_programme",
    "search_recipes",
    "selection_score",
    "split_path",
    "summarise",
]

SPLITS = ("dev", "test")
STANDARD, MATRYOSHKA = "standard", "matryoshka"
KINDS = (STANDARD, MATRYOSHKA)
EVAL_DIMS = (384, 256, 128, 64, 32, 16)
#: The options a recipe may set: fields of :class:`~matryo_fast.training.TrainConfig`.
RECIPE_OPTIONS = frozenset(
    {
        "max_steps",
        "epochs",
        "batch_size",
        "mini_batch_size",
        "learning_rate",
        "warmup_ratio",
        "max_seq_length",
        "dims",
        "weights",
        "matryoshka_loss",
    }
)
#: The CPU recipe of docs/reproduction.md.
BASELINE_OPTIONS: dict[str, Any] = {"max_steps": 250, "batch_size": 32, "max_seq_length": 32}
RESULTS_FILE = "programme.json"
TEMPLATE = "templates/programme.md"
#: Partner retrieval: an STS pair whose gold score is at least this is a (query, partner) pair.
PARTNER_MIN_SCORE = 4.0


@dataclass(frozen=True)
class Recipe:
    """A named training recipe: options of :class:`~matryo_fast.training.TrainConfig` plus
    whether STS-B train is added as a second (CoSENT) dataset.

    The options are checked when the recipe is made, by building a ``TrainConfig`` from them.

    Args:
        name: Label in the reports (also the run folder's name).
        options: ``TrainConfig`` fields from :data:`RECIPE_OPTIONS`; the rest are the
            programme's (data, seed, output folder, the Matryoshka switch).
        sts_train: Add ``stsb/train.tsv`` with ``CoSENTLoss`` (multi-dataset training).

    Raises:
        ValueError: An unknown option, a bad name, or a value ``TrainConfig`` rejects.
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    sts_train: bool = False

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "/\\") or self.name.startswith("."):
            raise ValueError(f"recipe name must be a plain folder name, got {self.name!r}")
        unknown = sorted(set(self.options) - RECIPE_OPTIONS)
        if unknown:
            raise ValueError(
                f"recipe {self.name!r}: unknown option(s) {unknown}; known: {sorted(RECIPE_OPTIONS)}"
            )
        self.config("-", "-", matryoshka=True, seed=0)

    def config(
        self,
        data: str | os.PathLike[str],
        output_dir: str | os.PathLike[str],
        *,
        matryoshka: bool,
        seed: int,
        model: str | os.PathLike[str] | None = None,
        sts_train_data: str | os.PathLike[str] | None = None,
        show_progress_bar: bool = False,
        device: str = "cpu",
    ) -> TrainConfig:
        """The ``TrainConfig`` of one run of this recipe (the triplet columns)."""
        options = {**BASELINE_OPTIONS, **self.options}
        if self.sts_train and sts_train_data is None:
            sts_train_data = "-"
        return TrainConfig(
            data,
            output_dir=output_dir,
            model=model,
            matryoshka=matryoshka,
            columns=["anchor", "positive", "negative"],
            seed=seed,
            device=device,
            show_progress_bar=show_progress_bar,
            extra_data=sts_train_data if self.sts_train else None,
            **options,
        )

    def describe(self) -> str:
        """The options as ``key=value`` text (the report's recipe column)."""
        options = {**BASELINE_OPTIONS, **self.options}
        parts = [f"{k}={_fmt(v)}" for k, v in sorted(options.items())]
        if self.sts_train:
            parts.append("+stsb-train(CoSENT)")
        return ", ".join(parts)


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "/".join(_fmt(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def load_recipes(path: str | os.PathLike[str]) -> list[Recipe]:
    """Recipes from a JSON list of objects ``{"name": ..., "sts_train": bool, <options>}``.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not such a list, duplicate names, or a bad recipe.
    """
    items = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(items, list) or not items or not all(isinstance(x, dict) for x in items):
        raise ValueError(f"{path}: expected a non-empty JSON list of recipe objects")
    recipes = []
    for item in items:
        options = dict(item)
        if "name" not in options:
            raise ValueError(f"{path}: a recipe has no 'name': {item}")
        name = str(options.pop("name"))
        sts_train = bool(options.pop("sts_train", False))
        recipes.append(Recipe(name, options, sts_train))
    names = [r.name for r in recipes]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: recipe names must be distinct, got {names}")
    return recipes


def split_path(split: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``stsb/<split>.tsv`` in the data folder (``$MATRYO_FAST_DATA`` or ``shared/data``).

    Raises:
        ValueError: ``split`` is not ``"dev"`` or ``"test"``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return Path(data_dir if data_dir is not None else default_data_dir()) / "stsb" / f"{split}.tsv"


def pair_cosines(
    emb: npt.NDArray[np.float32], rows1: npt.ArrayLike, rows2: npt.ArrayLike, dims: Sequence[int]
) -> dict[int, npt.NDArray[np.float64]]:
    """Cosine of each pair ``(emb[rows1[i]], emb[rows2[i]])`` at every width (first ``d``
    columns, re-normalised)."""
    from matryo_fast._reference import normalised_prefix

    a, b = np.asarray(rows1), np.asarray(rows2)
    out = {}
    for d in validate_dims(dims, emb.shape[1]):
        e = normalised_prefix(emb, d).astype(np.float64)
        out[d] = np.einsum("ij,ij->i", e[a], e[b])
    return out


def partner_retrieval(
    emb: npt.NDArray[np.float32],
    rows1: npt.ArrayLike,
    rows2: npt.ArrayLike,
    gold: npt.ArrayLike,
    dims: Sequence[int],
    *,
    k: int = 10,
    min_score: float = PARTNER_MIN_SCORE,
) -> dict[str, dict[int, float]]:
    """The retrieval side of an STS split, per width (x100).

    The corpus is every distinct sentence of the split (``emb``); each pair with gold score
    ``>= min_score`` gives a query (its first sentence, which is itself dropped from its own
    results) and its partner (the second sentence).

    Returns:
        ``{"recall@k": {d: v}, "partner@k": {d: v}}``: the recall of the width-``d`` top-k
        against the full-width top-k, and the share of queries whose partner is in the
        width-``d`` top-k.

    Raises:
        ValueError: No pair reaches ``min_score``, or bad dims.
    """
    from matryo_fast import topk

    r1, r2, g = np.asarray(rows1), np.asarray(rows2), np.asarray(gold, dtype=np.float64)
    keep = (g >= min_score) & (r1 != r2)
    if not keep.any():
        raise ValueError(f"no pair has a gold score >= {min_score}")
    self_row, partner = r1[keep], r2[keep]
    q = np.ascontiguousarray(emb[self_row])
    full = emb.shape[1]
    kk = min(k, emb.shape[0] - 1)

    def top_without_self(d: int) -> npt.NDArray[np.int64]:
        idx = topk(q, emb, dim=d, k=kk + 1).indices
        return np.array([[r for r in row if r != s][:kk] for row, s in zip(idx, self_row)])

    truth = top_without_self(full)
    out: dict[str, dict[int, float]] = {f"recall@{k}": {}, f"partner@{k}": {}}
    for d in validate_dims(dims, full):
        got = truth if d == full else top_without_self(d)
        out[f"recall@{k}"][d] = 100.0 * float(recall_per_query(got, truth).mean())
        out[f"partner@{k}"][d] = 100.0 * float(np.mean([p in row for p, row in zip(partner, got)]))
    return out


@dataclass
class Run:
    """One trained model of the programme and its scores on the split."""

    recipe: str
    seed: int
    kind: str
    spearman: dict[int, float]
    retrieval: dict[str, dict[int, float]]
    train_wall_s: float
    train_loss: float
    steps: int
    folder: str


def _score(
    model_dir: Path,
    sts: tuple[list[str], list[str], list[float]],
    dims: Sequence[int],
    device: str,
) -> tuple[dict[int, float], dict[int, npt.NDArray[np.float64]], dict[str, dict[int, float]]]:
    from matryo_fast.models import encode, load_model

    s1, s2, gold = sts
    index: dict[str, int] = {}
    rows = np.array([index.setdefault(t, len(index)) for t in [*s1, *s2]])
    emb = encode(load_model(model_dir, device=device), list(index), batch_size=64)
    n = len(s1)
    cos = pair_cosines(emb, rows[:n], rows[n:], dims)
    spearman = {d: 100.0 * correlations(gold, c)[0] for d, c in cos.items()}
    return spearman, cos, partner_retrieval(emb, rows[:n], rows[n:], gold, dims)


@dataclass
class ProgrammeResult:
    """Outcome of :func:`run_programme`: every run, the summaries per recipe, the files."""

    split: str
    runs: list[Run]
    summary: dict[str, dict[str, Any]]
    chosen: str
    wall_time_s: float
    files: list[Path]


def selection_score(summary: Mapping[str, Any]) -> float:
    """The dev-split rule that chooses a recipe: the mean over widths of the Matryoshka model's
    seed-mean Spearman (every width counts; full width and small widths alike)."""
    means = [s["mean"] for s in summary[MATRYOSHKA]["spearman"].values()]
    return float(np.mean(means))


def summarise(
    runs: Sequence[Run],
    gold: npt.ArrayLike,
    cosines: Mapping[tuple[int, str], Mapping[int, Any]],
    seeds: Sequence[int],
    n_resamples: int,
) -> dict[str, Any]:
    """One recipe's runs summarised: per kind and width the seed stats of Spearman and of each
    retrieval metric, the share of the full-width Spearman kept (of the seed means), and per
    width the paired-bootstrap interval of Matryoshka minus standard over the pairs (all seeds'
    cosines, resampled together; bootstrap seed 0).

    Args:
        runs: The recipe's :class:`Run` s, both kinds, every seed.
        gold: The split's gold scores.
        cosines: ``{(seed, kind): {width: per-pair cosines}}``.
        seeds: The seeds.
        n_resamples: Bootstrap resamples per width.
    """
    out: dict[str, Any] = {}
    for kind in KINDS:
        mine = [r for r in runs if r.kind == kind]
        out[kind] = {
            "spearman": {d: asdict(s) for d, s in aggregate_seeds([r.spearman for r in mine]).items()},
            "retrieval": {
                metric: {
                    d: asdict(s) for d, s in aggregate_seeds([r.retrieval[metric] for r in mine]).items()
                }
                for metric in mine[0].retrieval
            },
            "train_wall_s": [r.train_wall_s for r in mine],
        }
    dims = list(out[MATRYOSHKA]["spearman"])
    full = max(dims)
    out["share"] = {
        kind: {
            d: 100.0 * out[kind]["spearman"][d]["mean"] / out[kind]["spearman"][full]["mean"] for d in dims
        }
        for kind in KINDS
    }
    intervals: dict[int, Interval] = {}
    for d in dims:
        a = np.stack([cosines[(s, MATRYOSHKA)][d] for s in seeds])
        b = np.stack([cosines[(s, STANDARD)][d] for s in seeds])
        intervals[d] = paired_bootstrap(gold, a, b, n_resamples=n_resamples, seed=0)
    out["difference"] = {d: asdict(iv) for d, iv in intervals.items()}
    return out


def run_programme(
    recipes: Sequence[Recipe],
    *,
    seeds: Sequence[int],
    split: str,
    output_dir: str | os.PathLike[str],
    train_data: str | os.PathLike[str] | None = None,
    model: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    docs_dir: str | os.PathLike[str] | None = None,
    baseline: str | os.PathLike[str] | None = None,
    eval_dims: Sequence[int] = EVAL_DIMS,
    n_resamples: int = 2000,
    overwrite: bool = False,
    show_progress_bar: bool = False,
    command: str = "",
    device: str = "cpu",
) -> ProgrammeResult:
    """Train standard and Matryoshka models for every recipe and seed; score them on one split.

    Args:
        recipes: The recipes; with ``split="test"`` exactly one.
        seeds: Seeds; each recipe runs both models once per seed.
        split: ``"dev"`` (choosing) or ``"test"`` (the final table, one recipe).
        output_dir: New (or empty) folder: ``<recipe>/seed<s>/<kind>/`` models and
            ``cosines.npz``, ``programme.json``, ``programme.md``, ``programme_scores.png``.
        train_data: Triplets file; default ``nli/triplets.tsv`` in the data folder.
        model: Base model folder; ``None`` = the shipped all-MiniLM-L6-v2.
        data_dir: The data folder (default ``$MATRYO_FAST_DATA`` or ``shared/data``).
        docs_dir: Also write ``training_<split>.md`` and its plot here.
        baseline: An earlier ``reproduction.json`` shown as the baseline row (default
            ``docs/reproduction.json`` of the checkout when it exists).
        eval_dims: Widths scored.
        n_resamples: Bootstrap resamples per width.
        overwrite: Allow a non-empty ``output_dir``.
        show_progress_bar: Show the trainer's progress bars.
        command: The command line recorded in the report.
        device: Where to train and encode (``"cpu"``, ``"cuda"``, ...).

    Returns:
        A :class:`ProgrammeResult`.

    Raises:
        ValueError: No recipe or seed, duplicate seeds or names, or several recipes on test.
        FileExistsError: ``output_dir`` is not empty and ``overwrite`` is false.
        FileNotFoundError: A data file is missing.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if not recipes:
        raise ValueError("run_programme needs at least one recipe")
    if split == "test" and len(recipes) != 1:
        raise ValueError(
            f"the test split scores ONE recipe (the one chosen on dev), got {len(recipes)}; "
            "compare recipes with split='dev' (matryo recipe-search)"
        )
    names = [r.name for r in recipes]
    if len(set(names)) != len(names):
        raise ValueError(f"recipe names must be distinct, got {names}")
    seed_list = [int(s) for s in seeds]
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds must be distinct and at least one, got {seed_list}")
    data = Path(data_dir) if data_dir is not None else default_data_dir()
    train_path = Path(train_data) if train_data is not None else data / "nli" / "triplets.tsv"
    eval_path = split_path(split, data)
    sts_train = data / "stsb" / "train.tsv"
    needed = [train_path, eval_path] + ([sts_train] if any(r.sts_train for r in recipes) else [])
    out = prepare_output(output_dir, needed, overwrite=overwrite)
    from matryo_fast.data import read_sts

    sts = read_sts(eval_path)
    gold = np.asarray(sts[2], dtype=np.float64)
    base_json = _baseline_path(baseline)
    t0 = time.perf_counter()
    runs: list[Run] = []
    summary: dict[str, dict[str, Any]] = {}
    state: dict[str, Any] = {}
    for recipe in recipes:
        cosines: dict[tuple[int, str], dict[int, Any]] = {}
        for seed in seed_list:
            for kind in KINDS:
                folder = out / recipe.name / f"seed{seed}" / kind
                cfg = recipe.config(
                    train_path,
                    folder,
                    matryoshka=kind == MATRYOSHKA,
                    seed=seed,
                    model=model,
                    sts_train_data=sts_train,
                    show_progress_bar=show_progress_bar,
                    device=device,
                )
                result = train(cfg, overwrite=overwrite)
                spearman, cos, retrieval = _score(folder, sts, eval_dims, device)
                buffer = io.BytesIO()
                arrays: dict[str, Any] = {str(d): c for d, c in cos.items()}
                np.savez(buffer, allow_pickle=False, **arrays)
                write_atomic(folder / "cosines.npz", buffer.getvalue())
                cosines[(seed, kind)] = cos
                runs.append(
                    Run(
                        recipe.name,
                        seed,
                        kind,
                        spearman,
                        retrieval,
                        result.wall_time_s,
                        result.train_loss,
                        result.global_step,
                        os.fspath(folder),
                    )
                )
                state = _state(split, eval_path, train_path, recipes, seed_list, runs, summary, t0, command)
                write_atomic(out / RESULTS_FILE, json.dumps(state, indent=2).encode())
        mine = [r for r in runs if r.recipe == recipe.name]
        summary[recipe.name] = summarise(mine, gold, cosines, seed_list, n_resamples)
    wall = time.perf_counter() - t0
    chosen = max(summary, key=lambda name: selection_score(summary[name]))
    state = _state(split, eval_path, train_path, recipes, seed_list, runs, summary, t0, command)
    state.update({"chosen": chosen, "wall_time_s": wall, "pairs": len(gold)})
    if base_json is not None:
        state["baseline"] = _baseline(base_json)
    write_atomic(out / RESULTS_FILE, json.dumps(state, indent=2).encode())
    files = [out / RESULTS_FILE, *write_report(out / RESULTS_FILE, out)]
    if docs_dir is not None:
        files += write_report(out / RESULTS_FILE, Path(docs_dir), stem=f"training_{split}")
    return ProgrammeResult(split, runs, summary, chosen, wall, files)


def search_recipes(recipes: Sequence[Recipe], **options: Any) -> ProgrammeResult:
    """:func:`run_programme` on ``stsb/dev.tsv``: the recipe search (every recipe is reported,
    the chosen one by :func:`selection_score`). Takes the same keyword options except
    ``split``."""
    if "split" in options:
        raise TypeError("search_recipes always scores stsb/dev.tsv; it takes no split")
    return run_programme(recipes, split="dev", **options)


def _state(
    split: str,
    eval_path: Path,
    train_path: Path,
    recipes: Sequence[Recipe],
    seeds: list[int],
    runs: list[Run],
    summary: dict[str, Any],
    t0: float,
    command: str,
) -> dict[str, Any]:
    return {
        "split": split,
        "eval_data": f"stsb/{eval_path.name}",
        "train_data": f"{train_path.parent.name}/{train_path.name}",
        "seeds": seeds,
        "recipes": [
            {
                "name": r.name,
                "options": {**BASELINE_OPTIONS, **r.options},
                "sts_train": r.sts_train,
                "described": r.describe(),
            }
            for r in recipes
        ],
        "runs": [asdict(r) for r in runs],
        "summary": summary,
        "elapsed_s": time.perf_counter() - t0,
        "command": command,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "date": _dt.date.today().isoformat(),
    }


def _baseline_path(baseline: str | os.PathLike[str] | None) -> Path | None:
    if baseline is not None:
        p = Path(baseline)
        if not p.is_file():
            raise FileNotFoundError(f"baseline file not found: {p}")
        return p
    default = Path(__file__).resolve().parents[2] / "docs" / "reproduction.json"
    return default if default.is_file() else None


def _baseline(path: Path) -> dict[str, Any]:
    """The standard and Matryoshka Spearman per width of an earlier ``reproduction.json``."""
    from matryo_fast.evaluation import EvaluationReport

    rep = EvaluationReport.from_json(path)
    return {
        "file": path.name,
        "dataset": rep.dataset,
        "command": rep.meta.get("command", ""),
        "spearman": {kind: {int(d): rep.score(kind, int(d)) for d in rep.dims(kind)} for kind in KINDS},
    }


# ---- report ----------------------------------------------------------------------------------


def _keyed(d: Mapping[Any, Any]) -> dict[int, Any]:
    return {int(k): v for k, v in d.items()}


def _recipes_table(state: Mapping[str, Any]) -> str:
    dims = sorted(_keyed(next(iter(state["summary"].values()))["share"][MATRYOSHKA]), reverse=True)
    small = [d for d in dims if d <= 64]
    head = ["recipe", "options", "seeds", "standard full", "matryoshka full"]
    head += [f"Δ@{d} [95%]" for d in small] + ["kept@32 mrl / std", "selection score", "train min/model"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    described = {r["name"]: r["described"] for r in state["recipes"]}
    for name, s in state["summary"].items():
        sp = {k: _keyed(s[k]["spearman"]) for k in KINDS}
        diff = _keyed(s["difference"])
        share = {k: _keyed(s["share"][k]) for k in KINDS}
        walls = s[STANDARD]["train_wall_s"] + s[MATRYOSHKA]["train_wall_s"]
        cells = [
            f"**{name}**" if name == state.get("chosen") else name,
            described.get(name, ""),
            str(len(state["seeds"])),
            f"{sp[STANDARD][max(dims)]['mean']:.2f}",
            f"{sp[MATRYOSHKA][max(dims)]['mean']:.2f}",
        ]
        cells += [f"{diff[d]['diff']:+.2f} [{diff[d]['low']:+.2f}, {diff[d]['high']:+.2f}]" for d in small]
        kept = (
            f"{share[MATRYOSHKA].get(32, float('nan')):.1f}% / {share[STANDARD].get(32, float('nan')):.1f}%"
        )
        cells += [kept, f"{selection_score(s):.2f}", f"{np.mean(walls) / 60:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    base = state.get("baseline")
    if base is not None:
        bs = {k: _keyed(base["spearman"][k]) for k in KINDS}
        full = max(bs[MATRYOSHKA])
        cells = [
            "baseline (docs/reproduction.md)",
            f"max_steps=250, batch_size=32, max_seq_length=32, seed 42, scored on {base['dataset']}",
            "1",
            f"{bs[STANDARD][full]:.2f}",
            f"{bs[MATRYOSHKA][full]:.2f}",
        ]
        cells += [f"{bs[MATRYOSHKA][d] - bs[STANDARD][d]:+.2f}" if d in bs[MATRYOSHKA] else "" for d in small]
        kept = " / ".join(f"{100 * bs[k][32] / bs[k][full]:.1f}%" for k in (MATRYOSHKA, STANDARD))
        cells += [kept, "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _per_width_table(s: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> str:
    sp = {k: _keyed(s[k]["spearman"]) for k in KINDS}
    share = {k: _keyed(s["share"][k]) for k in KINDS}
    diff = _keyed(s["difference"])
    ret = {k: {m: _keyed(v) for m, v in s[k]["retrieval"].items()} for k in KINDS}
    metrics = list(ret[MATRYOSHKA])
    head = ["dim", "standard", "matryoshka", "Δ (mrl − std)", "95% interval", "kept std / mrl"]
    head += [f"{m} std / mrl" for m in metrics]
    if baseline is not None:
        head.append("baseline std / mrl")
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for d in sorted(sp[MATRYOSHKA], reverse=True):
        cells = [str(d)]
        cells += [f"{sp[k][d]['mean']:.2f} ± {sp[k][d]['sd']:.2f}" for k in KINDS]
        iv = diff[d]
        mark = " *" if iv["low"] > 0 or iv["high"] < 0 else ""
        cells += [f"{iv['diff']:+.2f}", f"[{iv['low']:+.2f}, {iv['high']:+.2f}]{mark}"]
        cells.append(f"{share[STANDARD][d]:.1f}% / {share[MATRYOSHKA][d]:.1f}%")
        cells += [f"{ret[STANDARD][m][d]['mean']:.1f} / {ret[MATRYOSHKA][m][d]['mean']:.1f}" for m in metrics]
        if baseline is not None:
            b = {k: _keyed(baseline["spearman"][k]) for k in KINDS}
            cells.append(f"{b[STANDARD][d]:.2f} / {b[MATRYOSHKA][d]:.2f}" if d in b[STANDARD] else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _targets(s: Mapping[str, Any]) -> str:
    sp = {k: _keyed(s[k]["spearman"]) for k in KINDS}
    diff = _keyed(s["difference"])
    full = max(sp[MATRYOSHKA])
    kept = _keyed(s["share"][MATRYOSHKA]).get(32)
    small = [d for d in diff if d <= 64]
    ahead = all(diff[d]["low"] > 0 for d in small)
    gap = sp[STANDARD][full]["mean"] - sp[MATRYOSHKA][full]["mean"]
    yes = {True: "**met**", False: "**not met**"}
    kept_text = "no 32-dim score" if kept is None else f"{kept:.1f}%"
    intervals = ", ".join(
        f"{d}: [{diff[d]['low']:+.2f}, {diff[d]['high']:+.2f}]" for d in sorted(small, reverse=True)
    )
    return "\n".join(
        [
            f"- Matryoshka keeps >= 97% of its full-width Spearman at 32 dims: {kept_text} "
            f"({yes[kept is not None and kept >= 97]}).",
            f"- Ahead of the control at every width <= 64 with the 95% interval above 0: "
            f"{intervals} "
            f"({yes[ahead]}).",
            f"- Within 0.5 points of the control at full width: standard − Matryoshka = {gap:+.2f} "
            f"({yes[gap <= 0.5]}).",
        ]
    )


def _plot(state: Mapping[str, Any], name: str, path: Path) -> Path:
    from matryo_fast._extras import require

    mpl = require("matplotlib", feature="the programme plot")
    mpl.use("Agg")
    plt = require("matplotlib.pyplot", feature="the programme plot")
    s = state["summary"][name]
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind in KINDS:
        sp = _keyed(s[kind]["spearman"])
        dims = sorted(sp)
        ax.errorbar(
            dims,
            [sp[d]["mean"] for d in dims],
            yerr=[sp[d]["sd"] for d in dims],
            marker="o",
            capsize=3,
            label=f"{kind} (mean ± sd, {len(state['seeds'])} seed(s))",
        )
    base = state.get("baseline")
    if base is not None and state["split"] == "test":
        for kind in KINDS:
            b = _keyed(base["spearman"][kind])
            ax.plot(sorted(b), [b[d] for d in sorted(b)], linestyle=":", label=f"baseline {kind} (250 steps)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("embedding dimension")
    ax.set_ylabel("Spearman x100")
    ax.set_title(f"{state['eval_data']}: recipe {name}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def write_report(
    results: str | os.PathLike[str], target: str | os.PathLike[str], *, stem: str = "programme"
) -> list[Path]:
    """Render ``programme.json`` to ``<stem>.md`` and ``<stem>_scores.png`` in ``target`` from
    the package template ``templates/programme.md`` (no training: rerun it on the JSON any time).

    Returns:
        The written files.
    """
    state = json.loads(Path(results).read_text(encoding="utf-8"))
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    chosen = state["chosen"]
    plot = _plot(state, chosen, out / f"{stem}_scores.png")
    sections = []
    for name, s in state["summary"].items():
        sections.append(f"### {name}\n\n{_per_width_table(s, state.get('baseline'))}\n\n{_targets(s)}\n")
    split_note = (
        "the development split: recipes are chosen here, never on test"
        if state["split"] == "dev"
        else "the test split, read once for this final table (the recipe was chosen on dev)"
    )
    values = {
        "split": state["split"],
        "split_note": split_note,
        "eval_data": state["eval_data"],
        "pairs": state["pairs"],
        "train_data": state["train_data"],
        "seeds": ", ".join(map(str, state["seeds"])),
        "machine": state["machine"],
        "date": state["date"],
        "wall_min": f"{state['wall_time_s'] / 60:.1f}",
        "command": state["command"] or "(not recorded)",
        "chosen": chosen,
        "recipes_table": _recipes_table(state),
        "sections": "\n".join(sections).rstrip(),
        "plot": plot.name,
        "partner_min": f"{PARTNER_MIN_SCORE:g}",
    }
    template = Template(resources.files("matryo_fast").joinpath(TEMPLATE).read_text(encoding="utf-8"))
    md = out / f"{stem}.md"
    write_atomic(md, template.substitute(values).encode())
    return [md, plot]
