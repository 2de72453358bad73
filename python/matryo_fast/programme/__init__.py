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

One module per job: :mod:`~matryo_fast.programme.recipes` (the baseline recipe, the triplet
``TrainConfig``, :class:`Recipe`, the recipe file), :mod:`~matryo_fast.programme.scores` (per-width
scores of a run, the summary over seeds, :func:`selection_score`),
:mod:`~matryo_fast.programme.run` (:func:`run_programme`, :func:`search_recipes`) and
:mod:`~matryo_fast.programme.report` (:func:`write_report`). Every name is importable from
``matryo_fast.programme``.

>>> from matryo_fast.programme import Recipe, run_programme
>>> recipe = Recipe("cmnrl-256", {"epochs": 1.0, "max_steps": None, "batch_size": 256,
...                               "mini_batch_size": 32})
>>> run_programme([recipe], seeds=[1, 2, 3], split="test", output_dir="runs/final")  # doctest: +SKIP
"""

from matryo_fast.programme.recipes import BASELINE_OPTIONS, RECIPE_OPTIONS, Recipe, load_recipes
from matryo_fast.programme.report import write_report
from matryo_fast.programme.run import (
    EVAL_DIMS,
    RESULTS_FILE,
    SPLITS,
    ProgrammeResult,
    run_programme,
    search_recipes,
    split_path,
)
from matryo_fast.programme.scores import (
    KINDS,
    MATRYOSHKA,
    STANDARD,
    Run,
    pair_cosines,
    partner_retrieval,
    selection_score,
    summarise,
)

__all__ = [
    "BASELINE_OPTIONS",
    "EVAL_DIMS",
    "KINDS",
    "MATRYOSHKA",
    "RECIPE_OPTIONS",
    "RESULTS_FILE",
    "SPLITS",
    "STANDARD",
    "ProgrammeResult",
    "Recipe",
    "Run",
    "load_recipes",
    "pair_cosines",
    "partner_retrieval",
    "run_programme",
    "search_recipes",
    "selection_score",
    "split_path",
    "summarise",
    "write_report",
]
