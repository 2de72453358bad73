//! Funnel search: a `topk` scan at a small prefix keeps a shortlist, then each later stage
//! re-scores only the surviving rows at a wider prefix (a gather through the same fused
//! dot + norm kernel) and keeps fewer. The last stage keeps `k`.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::layout::{Matrix, Prefix};
use crate::pool;
use crate::search::{check_dim, check_k, row_scale, scan, score, Hits, Queries};
use crate::selection::{Hit, Selection};

/// A checked cascade (see [`check_plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Prefix width of each stage, strictly increasing.
    pub dims: Vec<usize>,
    /// Rows kept by each stage but the last, non-increasing, each at least `k`.
    pub candidates: Vec<usize>,
    /// Rows the last stage keeps.
    pub k: usize,
}

/// Checks a cascade: widths strictly increasing within query and corpus, one candidate count
/// per stage but the last, counts non-increasing and at least `k`.
pub fn check_plan(
    dims: &[i64],
    candidates: &[i64],
    k: i64,
    query_cols: usize,
    corpus_cols: usize,
) -> Result<Plan> {
    if dims.is_empty() {
        return Err(Error::InvalidPlan(
            "dims must name at least one width".into(),
        ));
    }
    let (candidates, k) = check_counts(candidates, k, dims.len())?;
    let widths = dims
        .iter()
        .map(|&d| check_dim(d, query_cols, corpus_cols))
        .collect::<Result<Vec<_>>>()?;
    if let Some(w) = dims.windows(2).find(|w| w[1] <= w[0]) {
        return Err(Error::InvalidPlan(format!(
            "dims must strictly increase, got {} then {}",
            w[0], w[1]
        )));
    }
    Ok(Plan {
        dims: widths,
        candidates,
        k,
    })
}

/// Checks a cascade's counts: `k >= 1`, one candidate count per stage but the last
/// (`stages - 1`), counts non-increasing and at least `k`.
pub(crate) fn check_counts(
    candidates: &[i64],
    k: i64,
    stages: usize,
) -> Result<(Vec<usize>, usize)> {
    let k = check_k(k)?;
    if candidates.len() + 1 != stages {
        return Err(Error::InvalidPlan(format!(
            "len(candidates) must be len(dims) - 1 = {}, got {} (one shortlist size per stage but the last)",
            stages.saturating_sub(1),
            candidates.len()
        )));
    }
    if let Some(&c) = candidates.iter().find(|&&c| c < 1 || (c as u64) < k as u64) {
        return Err(Error::InvalidPlan(format!(
            "every candidate count must be at least k={k}, got {c}"
        )));
    }
    if let Some(w) = candidates.windows(2).find(|w| w[1] > w[0]) {
        return Err(Error::InvalidPlan(format!(
            "candidate counts must not increase, got {} then {}",
            w[0], w[1]
        )));
    }
    let candidates = candidates
        .iter()
        .map(|&c| usize::try_from(c).unwrap_or(usize::MAX))
        .collect();
    Ok((candidates, k))
}

/// The funnel search; see the module docs. Scores are cosines at the last width.
pub fn funnel(
    queries: Queries<'_>,
    corpus: &Matrix<'_>,
    dims: &[i64],
    candidates: &[i64],
    k: i64,
) -> Result<Hits> {
    funnel_with(Kernels::active()?, queries, corpus, dims, candidates, k)
}

/// [`funnel`] with explicit kernels.
pub fn funnel_with(
    kernels: Kernels,
    queries: Queries<'_>,
    corpus: &Matrix<'_>,
    dims: &[i64],
    candidates: &[i64],
    k: i64,
) -> Result<Hits> {
    let Plan {
        dims,
        candidates,
        k,
    } = check_plan(dims, candidates, k, queries.cols(), corpus.cols())?;
    let n = corpus.rows();
    let nq = queries.len();
    // How many rows each stage keeps; the last keeps k.
    let keep: Vec<usize> = candidates
        .iter()
        .copied()
        .chain([k])
        .map(|c| c.min(n))
        .collect();
    let prefix0 = corpus.prefix(dims[0]);
    let q0 = queries.normalized(dims[0])?;
    let mut lists = scan(&kernels, &q0, nq, &prefix0, keep[0], 0..n)?;
    for (stage, &dim) in dims.iter().enumerate().skip(1) {
        let prefix = corpus.prefix(dim);
        let qn = queries.normalized(dim)?;
        let keep = keep[stage];
        let rescore = |(j, list): (usize, Vec<Hit>)| {
            rescore(&kernels, &qn[j * dim..(j + 1) * dim], &prefix, list, keep)
        };
        lists = if nq > 1 {
            pool::install(|| {
                lists
                    .into_par_iter()
                    .enumerate()
                    .map(rescore)
                    .collect::<Result<Vec<_>>>()
            })?
        } else {
            lists
                .into_iter()
                .enumerate()
                .map(rescore)
                .collect::<Result<Vec<_>>>()?
        };
    }
    Ok(Hits::from_lists(lists, keep[keep.len() - 1]))
}

/// Scores `list`'s rows against the unit query `q` over `prefix`, keeps the best `keep`.
pub(crate) fn rescore(
    kernels: &Kernels,
    q: &[f32],
    prefix: &Prefix<'_>,
    list: Vec<Hit>,
    keep: usize,
) -> Result<Vec<Hit>> {
    let mut rows: Vec<usize> = list.into_iter().map(|h| h.row).collect();
    // Ascending rows read the corpus in file order.
    rows.sort_unstable();
    let mut scores = vec![0.0f32; rows.len()];
    gather_scores(kernels, q, prefix, &rows, &mut scores)?;
    let mut sel = Selection::new(keep);
    for (&row, &s) in rows.iter().zip(&scores) {
        sel.push(s, row);
    }
    Ok(sel.into_sorted())
}

/// `out[i]` = the cosine of the unit query `q` with row `rows[i]` over `prefix`: the gather
/// that re-scores a funnel stage.
fn gather_scores(
    kernels: &Kernels,
    q: &[f32],
    prefix: &Prefix<'_>,
    rows: &[usize],
    out: &mut [f32],
) -> Result<()> {
    let mut norms = vec![0.0f32; rows.len()];
    kernels.dot_norm(q, prefix, rows, out, &mut norms);
    for ((&row, s), &nn) in rows.iter().zip(out.iter_mut()).zip(&norms) {
        let scale = row_scale(nn, prefix, row)?;
        *s = score(*s, scale, q, prefix, row);
    }
    Ok(())
}

/// Scores given rows at width `dim`: query `j` against `rows[offsets[j]..offsets[j + 1]]`, one
/// score per row in `rows`' order. The same gather as a funnel's re-scoring stage, so a row's
/// score is bitwise the one a funnel gives it (a sharded funnel merges each stage's shortlist
/// across shards, then re-scores the merged list on each shard with this).
pub fn score_rows(
    queries: Queries<'_>,
    corpus: &Matrix<'_>,
    dim: i64,
    rows: &[i64],
    offsets: &[usize],
) -> Result<Vec<f32>> {
    let kernels = Kernels::active()?;
    let dim = check_dim(dim, queries.cols(), corpus.cols())?;
    let nq = queries.len();
    let ragged = offsets.len() != nq + 1
        || offsets.first() != Some(&0)
        || offsets.last() != Some(&rows.len())
        || offsets.windows(2).any(|w| w[1] < w[0]);
    if ragged {
        return Err(Error::DimMismatch(format!(
            "offsets must be {} non-decreasing values from 0 to len(rows)={}",
            nq + 1,
            rows.len()
        )));
    }
    let n = corpus.rows();
    let rows = rows
        .iter()
        .map(|&r| match usize::try_from(r) {
            Ok(u) if u < n => Ok(u),
            _ => Err(Error::RowOutOfRange { row: r, rows: n }),
        })
        .collect::<Result<Vec<usize>>>()?;
    let prefix = corpus.prefix(dim);
    let qn = queries.normalized(dim)?;
    let mut out = vec![0.0f32; rows.len()];
    let mut parts = Vec::with_capacity(nq);
    let mut rest = out.as_mut_slice();
    for w in offsets.windows(2) {
        let (part, tail) = rest.split_at_mut(w[1] - w[0]);
        parts.push((&rows[w[0]..w[1]], part));
        rest = tail;
    }
    let run = |(j, (rows, part)): (usize, (&[usize], &mut [f32]))| {
        gather_scores(&kernels, &qn[j * dim..(j + 1) * dim], &prefix, rows, part)
    };
    if nq > 1 {
        pool::install(|| parts.into_par_iter().enumerate().try_for_each(run))?;
    } else {
        parts.into_iter().enumerate().try_for_each(run)?;
    }
    Ok(out)
}
