"""The programme's report: ``programme.json`` rendered to Markdown from the package template
``templates/programme.md`` (recipes table, per-width tables, targets) and a plot.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from matryo_fast.files import write_atomic
from matryo_fast.programme.scores import KINDS, MATRYOSHKA, PARTNER_MIN_SCORE, STANDARD, selection_score

__all__ = ["TEMPLATE", "write_report"]

TEMPLATE = "templates/programme.md"


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


def _reused(state: Mapping[str, Any]) -> str:
    """The runs scored from a model trained elsewhere (an identical run: same options, seed and
    data bytes), or that there are none."""
    runs = state.get("runs", [])
    shared = [r for r in runs if r.get("model", r["folder"]) != r["folder"]]
    if not shared:
        return "every run trained its own model"
    # the model's programme folder and run (<programme>/<recipe>/seed<s>/<kind>), not the whole path
    items = [
        f"{r['recipe']}/seed{r['seed']}/{r['kind']} ← `{'/'.join(Path(r['model']).parts[-4:])}`"
        for r in shared
    ]
    return (
        f"{len(shared)} of {len(runs)} runs are scored from a model trained once for an "
        "identical run (same options, seed and data bytes; its training time is that run's): "
        + "; ".join(items)
    )


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
        "reused": _reused(state),
    }
    template = Template(resources.files("matryo_fast").joinpath(TEMPLATE).read_text(encoding="utf-8"))
    md = out / f"{stem}.md"
    write_atomic(md, template.substitute(values).encode())
    return [md, plot]
