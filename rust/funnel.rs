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
    let mut dots = vec![0.0f32; rows.len()];
    let mut norms = vec![0.0f32; rows.len()];
    kernels.dot_norm(q, prefix, &rows, &mut dots, &mut norms);
    let mut sel = Selection::new(keep);
    for ((&row, &d), &nn) in rows.iter().zip(&dots).zip(&norms) {
        let s = row_scale(nn, prefix, row)?;
        sel.push(score(d, s, q, prefix, row), row);
    }
    Ok(sel.into_sorted())
}
