"""``matryo demo``: the main job end to end on real sentences.

1. Encode every unique sentence of STS-B and the NLI triplets (about 52k) with the shipped
   all-MiniLM-L6-v2 and stream the embeddings into a float32 corpus file (cached).
2. Map it with :func:`matryo_fast.open_corpus` and search it at several prefix widths: time
   per query batch, recall@10 against the full width, and whether each STS-B query finds its
   highly similar partner sentence.
3. Show one query's results at the full width and at a small one.
4. Tune a funnel (shortlist small, re-rank at full width) on sample queries, picking the
   fastest plan that reaches the recall target, then check it on held-out ones.
"""

from __future__ import annotations

import argparse
import csv
import time
from functools import partial
from pathlib import Path

import numpy as np

import matryo_fast as mf
from matryo_fast._extras import default_data_dir
from matryo_fast._metrics import recall_per_query
from matryo_fast._timing import median_ms

__all__ = ["build_corpus", "corpus_sentences", "main", "read_tsv"]


def read_tsv(path: Path) -> list[dict[str, str]]:
    """The rows of a tab-separated file with a header (no quoting), as dicts."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def corpus_sentences(data: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Unique sentences (stable order) and the STS-B test pairs scored >= 4 (near paraphrases)."""
    seen: dict[str, None] = {}
    for split in ("train", "dev", "test"):
        for row in read_tsv(data / "stsb" / f"{split}.tsv"):
            seen.setdefault(row["sentence1"])
            seen.setdefault(row["sentence2"])
    for row in read_tsv(data / "nli" / "triplets.tsv"):
        for col in ("anchor", "positive", "negative"):
            seen.setdefault(row[col])
    pairs = [
        (r["sentence1"], r["sentence2"])
        for r in read_tsv(data / "stsb" / "test.tsv")
        if float(r["score"]) >= 4.0 and r["sentence1"] != r["sentence2"]
    ]
    return list(seen), pairs


def build_corpus(texts: list[str], out: Path, model_name: str | None) -> Path:
    """Encodes ``texts`` with the model (default: the shipped MiniLM) into the corpus file ``out``."""
    from matryo_fast.models import encode, load_model, model_dim

    model = load_model(model_name)
    t0 = time.perf_counter()
    with mf.CorpusWriter(out, dim=model_dim(model), overwrite=True) as w:
        step = 4096
        for start in range(0, len(texts), step):
            w.append(encode(model, texts[start : start + step], batch_size=128))
            print(f"   encoded {min(start + step, len(texts)):,}/{len(texts):,}", end="\r", flush=True)
    print(f"   encoded {len(texts):,} sentences in {time.perf_counter() - t0:.0f} s" + " " * 10)
    return out


def main(argv: list[str] | None = None) -> int:
    """Runs the demo; returns the exit code."""
    p = argparse.ArgumentParser(prog="matryo demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder with stsb/ and nli/ (default: ../shared/data)")
    p.add_argument("--out-dir", type=Path, default=Path("build/demo"),
                   help="where the corpus file goes")
    p.add_argument("--model", default=None,
                   help="local sentence-transformers folder (default: the shipped MiniLM)")
    p.add_argument("--dims", default="384,256,128,64,32,16", help="prefix widths to search")
    p.add_argument("--queries", type=int, default=256, help="query batch size")
    p.add_argument("--rebuild", action="store_true", help="re-encode even if the corpus file exists")
    args = p.parse_args(argv)

    data = args.data_dir or default_data_dir()
    if not (data / "stsb" / "test.tsv").is_file():
        p.error(f"no STS-B data under {data}; pass --data-dir or set MATRYO_FAST_DATA")
    info = mf.backends()
    print(f"matryo-fast {mf.__version__}: backend {info['active']} (available: "
          f"{', '.join(info['available'])}), {info['threads']} threads")

    texts, pairs = corpus_sentences(data)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / "corpus.npy"
    print(f"\n1. Corpus: {len(texts):,} unique sentences (STS-B + NLI) from {data}")
    fresh = args.rebuild or not path.exists() or mf.open_corpus(path).shape[0] != len(texts)
    if fresh:
        build_corpus(texts, path, args.model)
    corpus = mf.open_corpus(path)
    n, full = corpus.shape
    print(f"   {path}: {n:,} x {full} float32, {path.stat().st_size / 1e6:.0f} MB, memory-mapped"
          f"{'' if fresh else ' (cached; --rebuild re-encodes)'}")

    from matryo_fast.models import encode, load_model

    model = load_model(args.model)
    pairs = pairs[: args.queries]
    row_of = {t: i for i, t in enumerate(texts)}
    q = encode(model, [a for a, _ in pairs], batch_size=128)
    partner = np.array([row_of[b] for _, b in pairs])
    self_row = np.array([row_of[a] for a, _ in pairs])
    # The query sentence itself is in the corpus: ask for k+1 and drop it.
    dims = [int(d) for d in args.dims.split(",") if int(d) <= full]
    truth = mf.topk(q, corpus, dim=full, k=11).indices

    def without_self(idx: np.ndarray) -> np.ndarray:
        return np.array([[r for r in row if r != s][:10] for row, s in zip(idx, self_row)])

    truth10 = without_self(truth)
    print(f"\n2. Search {len(q)} queries (STS-B test sentences scored >= 4 with a partner), k=10")
    print(f"   {'dim':>5} {'% of dims':>9} {'batch ms':>9} {'1 query ms':>10} "
          f"{'recall@10 vs full':>18} {'partner in top 10':>18}")
    for d in dims:
        res = mf.topk(q, corpus, dim=d, k=11)
        got = without_self(res.indices)
        recall = recall_per_query(got, truth10).mean()
        found = np.mean([p in row for p, row in zip(partner, got)])
        t_batch, t_one = median_ms(
            [partial(mf.topk, q, corpus, dim=d, k=11), partial(mf.topk, q[0], corpus, dim=d, k=11)],
            5,
        )
        print(f"   {d:>5} {100 * d / full:>8.1f}% {t_batch:>9.2f} {t_one:>10.3f} "
              f"{recall:>18.3f} {found:>18.3f}")

    small = min(dims)
    print(f"\n3. Query: {pairs[0][0]!r}")
    for d in (full, small):
        res = mf.topk(q[0], corpus, dim=d, k=4)
        print(f"   top 3 at dim {d}:")
        shown = [(s, i) for s, i in zip(res.scores, res.indices) if i != self_row[0]][:3]
        for s, i in shown:
            print(f"     {s:.3f}  {texts[i]}")

    # Tune on other STS-B test sentences than the ones checked afterwards (held out).
    used = {a for a, _ in pairs}
    tune_texts = list(dict.fromkeys(
        r["sentence1"] for r in read_tsv(data / "stsb" / "test.tsv") if r["sentence1"] not in used
    ))[:512]
    tune_q = encode(model, tune_texts, batch_size=128)
    print(f"\n4. Funnel: tune on {len(tune_q)} other queries for recall@10 >= 0.99 against exact "
          f"{full}-dim search, fastest plan wins")
    t0 = time.perf_counter()
    plan = mf.tune_funnel(corpus, tune_q, k=10, target_recall=0.99, by="time")
    feasible = sum(1 for r in plan.table if r["feasible"] and len(r["dims"]) > 1)
    print(f"   tuned in {time.perf_counter() - t0:.1f} s: {len(plan.table)} plans tried, {feasible} funnels "
          f"reach the target; chosen: dims={plan.dims}, candidates={plan.candidates} "
          f"(reads {plan.speedup:.1f}x less than exact), tuning recall@10 {plan.recall:.3f}")
    if plan.exact:
        print("   (no funnel beat exact search at this corpus size; funnels pay off on large corpora)")
    exact = mf.topk(q, corpus, dim=full, k=10).indices
    got = plan.search(q).indices
    recall = recall_per_query(got, exact).mean()
    t_plan, t_exact = median_ms([lambda: plan.search(q), lambda: mf.topk(q, corpus, dim=full, k=10)], 5)
    print(f"   the {len(q)} held-out queries of step 2: recall@10 {recall:.3f}; {t_plan:.2f} ms vs exact "
          f"{t_exact:.2f} ms ({t_exact / t_plan:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
