//! Every available backend against the scalar reference, and the search against a float64
//! oracle written here independently of the kernels.

use proptest::prelude::*;

use super::{available, Backend, Batch, Kernels};
use crate::funnel::funnel_with;
use crate::layout::{Matrix, RowCopy, Segment};
use crate::search::{topk_with, Queries};

/// Dims around every lane width (1, 4, 8, 16) and some odd ones; 32, 64 and 128 are 8 chunks
/// (the batch kernel's unrolled case) for 4, 8 and 16 lanes; 128 and 257 are more than one
/// piece of 16 chunks for 1 and 4 lanes, 257 for 8 and 16 too.
const DIMS: [usize; 20] = [
    1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 97, 128, 257,
];

pub(super) fn data(n: usize, seed: u64) -> Vec<f32> {
    // xorshift, deterministic and dependency-free
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn close(a: f32, b: f32, scale: f32) -> bool {
    (a - b).abs() <= 1e-5 * scale.max(1.0)
}

/// A (dot, squared norm) pair within rounding of the scalar reference's.
fn assert_close_pair(got: (f32, f32), want: (f32, f32), dim: usize, what: &str) {
    assert!(
        close(got.0, want.0, dim as f32),
        "{what} dot: {} vs {}",
        got.0,
        want.0
    );
    assert!(
        close(got.1, want.1, dim as f32),
        "{what} norm: {} vs {}",
        got.1,
        want.1
    );
}

#[test]
#[cfg(matryo_fast_no_simd)]
fn no_simd_build_has_scalar_only() {
    assert_eq!(available(), vec![Backend::Scalar]);
    assert!(Kernels::new(Backend::Avx2).is_err() && Kernels::new(Backend::Neon).is_err());
}

#[test]
fn scalar_is_always_available() {
    assert!(available().contains(&Backend::Scalar));
    assert_eq!(Backend::from_name("AVX2"), Some(Backend::Avx2));
    assert_eq!(Backend::from_name("sse9"), None);
}

#[test]
fn every_backend_matches_scalar_on_blocks() {
    let scalar = Kernels::new(Backend::Scalar).unwrap();
    for backend in available() {
        let kern = Kernels::new(backend).unwrap();
        for &cols in &DIMS {
            for rows in [1usize, 3, 4, 5, 8, 13] {
                let mut x = data(rows * (cols + 3), cols as u64 * 31 + rows as u64);
                // Row 2 all zero and row 4 tiny (squared norm below 1e-30): NaN scales, for
                // rows that the batch kernel must leave unmarked.
                for c in 0..cols + 3 {
                    if rows > 4 {
                        x[2 * (cols + 3) + c] = 0.0;
                        x[4 * (cols + 3) + c] *= 1e-20;
                    }
                }
                // Strided rows: each row has 3 extra columns after the prefix, never read.
                let m = Matrix::from_slice(&x, rows, cols + 3).unwrap();
                for dim in [cols, (cols / 2).max(1)] {
                    let p = m.prefix(dim);
                    // Enough queries for three groups of 16 lanes.
                    let nq = 50;
                    let q = data(nq * dim, 7 + dim as u64);
                    let idx: Vec<usize> = (0..rows).rev().collect();
                    let (mut d1, mut n1, mut d0, mut n0) = (
                        vec![0.0; rows],
                        vec![0.0; rows],
                        vec![0.0; rows],
                        vec![0.0; rows],
                    );
                    kern.dot_norm(&q[..dim], &p, &idx, &mut d1, &mut n1);
                    scalar.dot_norm(&q[..dim], &p, &idx, &mut d0, &mut n0);
                    for i in 0..rows {
                        assert!(
                            close(d1[i], d0[i], dim as f32),
                            "{backend} dot dim {dim}: {} vs {}",
                            d1[i],
                            d0[i]
                        );
                        assert!(close(n1[i], n0[i], dim as f32), "{backend} norm dim {dim}");
                    }
                    check_batch_dots(&kern, &p, &idx, &q, nq);
                }
            }
        }
    }
}

#[test]
fn line_span_counts_every_line_a_run_touches() {
    use super::generic::line_span;
    // 128 floats (512 bytes): 8 lines from a line start, 9 from 16 bytes into one (a numpy
    // buffer), 9 from the last float of a line.
    assert_eq!(line_span(4096, 128), (0, 8));
    assert_eq!(line_span(4096 + 16, 128), (16, 9));
    assert_eq!(line_span(4096 + 60, 128), (60, 9));
    assert_eq!(line_span(64 + 60, 1), (60, 1));
    assert_eq!(line_span(64 + 62, 1), (62, 2));
    assert_eq!(line_span(128, 0), (0, 0));
    assert_eq!(line_span(100, 17), (36, 2));
}

#[test]
fn every_backend_matches_scalar_on_rows_off_line_boundaries() {
    // Rows starting 1 to 15 floats into a cache line (a numpy buffer starts 4 floats in), at
    // widths around the vector and line sizes: the line-wise prefetch must not change a value.
    let scalar = Kernels::new(Backend::Scalar).unwrap();
    let rows = 37;
    for backend in available() {
        let kern = Kernels::new(backend).unwrap();
        for cols in [16usize, 17, 128, 130] {
            let x = data(rows * cols + 16, cols as u64);
            for skew in [0usize, 1, 4, 15] {
                let m = Matrix::from_slice(&x[skew..skew + rows * cols], rows, cols).unwrap();
                let q = data(cols, 3);
                let idx: Vec<usize> = (0..rows).collect();
                let mut out = [
                    vec![0.0; rows],
                    vec![0.0; rows],
                    vec![0.0; rows],
                    vec![0.0; rows],
                ];
                let [d1, n1, d0, n0] = &mut out;
                kern.dot_norm(&q, &m.prefix(cols), &idx, d1, n1);
                scalar.dot_norm(&q, &m.prefix(cols), &idx, d0, n0);
                for i in 0..rows {
                    let what = format!("{backend} skew {skew}");
                    assert_close_pair((d1[i], n1[i]), (d0[i], n0[i]), cols, &what);
                }
            }
        }
    }
}

/// The batch kernel agrees bitwise with the fused pass, and marks exactly the pairs that pass,
/// for query counts up to `nq` around the group sizes (so every tile shape and a padded last
/// group run); and `pass_masks` marks one query's rows as the batch kernel marks them.
fn check_batch_dots(
    kern: &Kernels,
    p: &crate::layout::Prefix<'_>,
    idx: &[usize],
    q: &[f32],
    nq: usize,
) {
    let (backend, lanes, dim, rows) = (kern.backend(), kern.lanes(), p.dim(), idx.len());
    let mut fused_norms = vec![0.0; rows];
    let fused: Vec<Vec<f32>> = (0..nq)
        .map(|j| {
            let mut dj = vec![0.0; rows];
            kern.dot_norm(
                &q[j * dim..(j + 1) * dim],
                p,
                idx,
                &mut dj,
                &mut fused_norms,
            );
            dj
        })
        .collect();
    let mut counts = vec![
        1,
        2,
        lanes - 1,
        lanes,
        lanes + 1,
        2 * lanes + 1,
        3 * lanes + 2,
        nq,
    ];
    counts.retain(|&c| c >= 1 && c <= nq);
    counts.dedup();
    for cnt in counts {
        let bq = kern.batch_queries(p, &q[..cnt * dim], cnt);
        let (padded, groups) = (bq.padded(), bq.groups());
        // Thresholds: none, a middling one, a small one and +inf, and +inf for the missing
        // queries.
        let thr: Vec<f32> = (0..padded)
            .map(|j| match j {
                _ if j >= cnt => f32::INFINITY,
                _ => [f32::NEG_INFINITY, 0.0, 1e-3, f32::INFINITY][j % 4],
            })
            .collect();
        let mut out = vec![f32::NAN; rows * padded];
        let (mut norms, mut scales) = (vec![f32::NAN; rows], vec![f32::NAN; rows]);
        let mut masks = vec![u32::MAX; rows * groups];
        let mut copy = RowCopy::default();
        kern.batch_dots(
            &mut Batch {
                queries: &bq,
                prefix: p,
                rows: idx,
                thr: &thr,
                dots: &mut out,
                norms: &mut norms,
                scales: &mut scales,
                masks: &mut masks,
            },
            &mut copy,
        );
        for i in 0..rows {
            let nn = fused_norms[i];
            assert_eq!(
                norms[i].to_bits(),
                nn.to_bits(),
                "{backend}: row {i} batch norm"
            );
            let want = if (1e-30..=1e30).contains(&nn) {
                1.0 / nn.sqrt()
            } else {
                f32::NAN
            };
            assert_eq!(
                scales[i].to_bits(),
                want.to_bits(),
                "{backend}: row {i} scale"
            );
        }
        let bit = |i: usize, j: usize| masks[i * groups + j / lanes] >> (j % lanes) & 1 == 1;
        for j in 0..padded {
            if j >= cnt {
                assert!(
                    (0..rows).all(|i| !bit(i, j)),
                    "{backend}: missing query {j} marked"
                );
                continue;
            }
            let dj = &fused[j];
            for i in 0..rows {
                assert_eq!(
                    out[i * padded + j].to_bits(),
                    dj[i].to_bits(),
                    "{backend}: query {j} of {cnt}, row {i}: batch dot differs from the fused pass"
                );
                let want = dj[i] * scales[i] >= thr[j];
                assert_eq!(bit(i, j), want, "{backend}: query {j} row {i} mask");
            }
            // One query's marks, from the fused pass's dots: the same bits.
            let row_groups = rows.div_ceil(lanes);
            let mut dp = dj.clone();
            dp.resize(row_groups * lanes, f32::NAN);
            let mut sp = scales.clone();
            sp.resize(row_groups * lanes, f32::NAN);
            let mut one = vec![u32::MAX; row_groups];
            kern.pass_masks(&dp, &sp, thr[j], &mut one);
            for i in 0..row_groups * lanes {
                let b = one[i / lanes] >> (i % lanes) & 1 == 1;
                assert_eq!(
                    b,
                    i < rows && bit(i, j),
                    "{backend}: query {j} row {i} pass_masks"
                );
            }
        }
    }
}

#[test]
fn batch_dots_refuses_short_buffers() {
    // The safe wrapper checks every buffer the kernel writes or reads: one too short panics
    // (instead of writing out of bounds).
    let (rows, cols, nq) = (5usize, 16usize, 3usize);
    let x = data(rows * cols, 51);
    let m = Matrix::from_slice(&x, rows, cols).unwrap();
    let p = m.prefix(cols);
    let idx: Vec<usize> = (0..rows).collect();
    for backend in available() {
        let kern = Kernels::new(backend).unwrap();
        let bq = kern.batch_queries(&p, &data(nq * cols, 52), nq);
        let (padded, groups) = (bq.padded(), bq.groups());
        // Which buffer is one element short: none, out, norms, scales, thr, masks.
        for short in 0..6 {
            let len = |i: usize, n: usize| if short == i { n - 1 } else { n };
            let mut out = vec![0.0; len(1, rows * padded)];
            let mut norms = vec![0.0; len(2, rows)];
            let mut scales = vec![0.0; len(3, rows)];
            let thr = vec![0.0; len(4, padded)];
            let mut masks = vec![0; len(5, rows * groups)];
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                kern.batch_dots(
                    &mut Batch {
                        queries: &bq,
                        prefix: &p,
                        rows: &idx,
                        thr: &thr,
                        dots: &mut out,
                        norms: &mut norms,
                        scales: &mut scales,
                        masks: &mut masks,
                    },
                    &mut RowCopy::default(),
                )
            }));
            assert_eq!(
                run.is_ok(),
                short == 0,
                "{backend}: buffer {short} one short"
            );
        }
    }
}

#[test]
fn batch_kernel_over_several_query_sets_matches_fused_pass() {
    // At 2100 dims a group of queries is too large for more than two groups to share a pass
    // over the rows (8 lanes: 263 chunks, 66 Ki floats a group), so 50 queries take several
    // passes, each reading the norms and scales that the first one wrote.
    let (rows, cols, nq) = (9usize, 2100usize, 50usize);
    let x = data(rows * cols, 41);
    let m = Matrix::from_slice(&x, rows, cols).unwrap();
    let q = data(nq * cols, 42);
    let idx: Vec<usize> = (0..rows).rev().collect();
    for backend in available() {
        let kern = Kernels::new(backend).unwrap();
        for dim in [cols, cols - 1] {
            let qd: Vec<f32> = q.chunks(cols).flat_map(|r| r[..dim].to_vec()).collect();
            check_batch_dots(&kern, &m.prefix(dim), &idx, &qd, nq);
        }
    }
}

/// Independent float64 oracle: (score, row) sorted by score desc, row asc.
fn oracle(q: &[f32], x: &[f32], cols: usize, dim: usize, k: usize) -> Vec<(f64, usize)> {
    let qn: f64 = q[..dim]
        .iter()
        .map(|&v| f64::from(v).powi(2))
        .sum::<f64>()
        .sqrt();
    let mut s: Vec<(f64, usize)> = x
        .chunks(cols)
        .enumerate()
        .map(|(r, row)| {
            let xn: f64 = row[..dim]
                .iter()
                .map(|&v| f64::from(v).powi(2))
                .sum::<f64>()
                .sqrt();
            let d: f64 = row[..dim]
                .iter()
                .zip(q)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            (
                if qn == 0.0 || xn == 0.0 {
                    0.0
                } else {
                    d / (qn * xn)
                },
                r,
            )
        })
        .collect();
    s.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    s.truncate(k);
    s
}

#[allow(clippy::too_many_arguments)] // a test helper: the case's parameters, spelled out
fn check_against_oracle(
    backend: Backend,
    x: &[f32],
    rows: usize,
    cols: usize,
    q: &[f32],
    nq: usize,
    dim: usize,
    k: usize,
) {
    let m = Matrix::from_slice(x, rows, cols).unwrap();
    let hits = topk_with(
        Kernels::new(backend).unwrap(),
        Queries::new(q, cols).unwrap(),
        &m,
        dim as i64,
        k as i64,
    )
    .unwrap();
    let kk = k.min(rows);
    assert_eq!(hits.k, kk);
    for j in 0..nq {
        let want = oracle(&q[j * cols..(j + 1) * cols], x, cols, dim, rows);
        let all: std::collections::HashMap<usize, f64> =
            want.iter().map(|&(s, r)| (r, s)).collect();
        let kth = want[kk - 1].0;
        for t in 0..kk {
            let (s, r) = (hits.scores[j * kk + t], hits.indices[j * kk + t] as usize);
            let exact = all[&r];
            assert!(
                (f64::from(s) - exact).abs() < 1e-5,
                "{backend}: row {r} score {s} vs {exact}"
            );
            assert!(
                exact >= kth - 1e-5,
                "{backend}: row {r} ({exact}) is not in the top {kk} (kth {kth})"
            );
            if t > 0 {
                assert!(hits.scores[j * kk + t - 1] >= s, "not sorted");
            }
        }
    }
}

#[test]
fn search_matches_float64_oracle_every_backend() {
    for backend in available() {
        for &cols in &[1usize, 7, 8, 17, 33, 64, 97] {
            let rows = 5003; // > one chunk boundary at MIN_CHUNK_ROWS, not a multiple of 4
            let x = data(rows * cols, cols as u64);
            for nq in [1usize, 2, 4, 7] {
                let q = data(nq * cols, 99 + nq as u64);
                for dim in [1, cols.div_ceil(2), cols] {
                    check_against_oracle(backend, &x, rows, cols, &q, nq, dim, 10);
                }
            }
        }
    }
}

#[test]
fn duplicates_tie_zero_rows_score_zero_batch_equals_single() {
    let cols = 19;
    let base = data(40 * cols, 5);
    let mut x = Vec::new();
    for r in 0..200 {
        match r % 5 {
            0 => x.extend(std::iter::repeat_n(0.0, cols)),
            _ => x.extend_from_slice(&base[(r % 40) * cols..(r % 40 + 1) * cols]),
        }
    }
    let m = Matrix::from_slice(&x, 200, cols).unwrap();
    for backend in available() {
        let kern = Kernels::new(backend).unwrap();
        let q = data(3 * cols, 8);
        let batch = topk_with(kern, Queries::new(&q, cols).unwrap(), &m, 11, 200).unwrap();
        for j in 0..3 {
            let single = topk_with(
                kern,
                Queries::new(&q[j * cols..(j + 1) * cols], cols).unwrap(),
                &m,
                11,
                200,
            )
            .unwrap();
            assert_eq!(
                &batch.scores[j * 200..(j + 1) * 200],
                &single.scores[..],
                "{backend}: batch != single"
            );
            assert_eq!(&batch.indices[j * 200..(j + 1) * 200], &single.indices[..]);
            for t in 1..200 {
                let (s0, s1) = (single.scores[t - 1], single.scores[t]);
                assert!(s0 >= s1);
                if s0 == s1 {
                    assert!(
                        single.indices[t - 1] < single.indices[t],
                        "{backend}: tie not in row order"
                    );
                }
            }
            // Every zero row (r % 5 == 0) scores exactly 0.0.
            for t in 0..200 {
                if single.indices[t] % 5 == 0 {
                    assert_eq!(single.scores[t].to_bits(), 0.0f32.to_bits());
                }
            }
        }
        // Zero query: all scores 0.0, rows in order.
        let z = vec![0.0; cols];
        let h = topk_with(kern, Queries::new(&z, cols).unwrap(), &m, cols as i64, 5).unwrap();
        assert_eq!(h.scores, vec![0.0; 5]);
        assert_eq!(h.indices, vec![0, 1, 2, 3, 4]);
    }
}

#[test]
fn extreme_magnitudes_use_exact_path_and_nan_rows_error() {
    let cols = 9;
    let mut x = data(6 * cols, 3);
    for v in &mut x[..cols] {
        *v *= 1e-25; // squared norm underflows float32
    }
    for v in &mut x[cols..2 * cols] {
        *v *= 1e20; // squared norm overflows float32
    }
    let q = data(3 * cols, 4);
    for backend in available() {
        // One query and a batch: both score these rows apart, exactly.
        check_against_oracle(backend, &x, 6, cols, &q[..cols], 1, cols, 6);
        check_against_oracle(backend, &x, 6, cols, &q, 3, cols, 6);
        let mut bad = x.clone();
        bad[4 * cols + 7] = f32::NAN;
        let m = Matrix::from_slice(&bad, 6, cols).unwrap();
        let kern = Kernels::new(backend).unwrap();
        for nq in [1, 3] {
            let qs = Queries::new(&q[..nq * cols], cols).unwrap();
            let e = topk_with(kern, qs, &m, cols as i64, 2).unwrap_err();
            assert!(e.to_string().contains("row 4"), "{e}");
            // Not scanned: fine.
            assert!(topk_with(kern, qs, &m, 7, 2).is_ok());
        }
    }
}

#[test]
fn funnel_with_everything_shortlisted_equals_exact() {
    let (rows, cols) = (3000, 48);
    let x = data(rows * cols, 11);
    let m = Matrix::from_slice(&x, rows, cols).unwrap();
    let q = data(4 * cols, 12);
    for backend in available() {
        let kern = Kernels::new(backend).unwrap();
        let exact = topk_with(kern, Queries::new(&q, cols).unwrap(), &m, 48, 10).unwrap();
        let f = funnel_with(
            kern,
            Queries::new(&q, cols).unwrap(),
            &m,
            &[8, 16, 48],
            &[5000, 3000],
            10,
        )
        .unwrap();
        assert_eq!(f, exact, "{backend}");
        assert!(funnel_with(
            kern,
            Queries::new(&q, cols).unwrap(),
            &m,
            &[16, 8],
            &[100],
            10
        )
        .is_err());
        assert!(funnel_with(
            kern,
            Queries::new(&q, cols).unwrap(),
            &m,
            &[8, 16],
            &[5],
            10
        )
        .is_err());
        assert!(funnel_with(
            kern,
            Queries::new(&q, cols).unwrap(),
            &m,
            &[8, 16, 32],
            &[100, 200],
            10
        )
        .is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn proptest_backends_vs_scalar(rows in 1usize..40, cols in 1usize..70, nq in 1usize..6, dim_frac in 0.0f64..1.0, k in 1usize..50, seed in 0u64..1000) {
        let dim = ((cols as f64 * dim_frac) as usize).clamp(1, cols);
        let x = data(rows * cols, seed);
        let q = data(nq * cols, seed + 1);
        let m = Matrix::from_slice(&x, rows, cols).unwrap();
        let reference = topk_with(Kernels::new(Backend::Scalar).unwrap(), Queries::new(&q, cols).unwrap(), &m, dim as i64, k as i64).unwrap();
        for backend in available() {
            let h = topk_with(Kernels::new(backend).unwrap(), Queries::new(&q, cols).unwrap(), &m, dim as i64, k as i64).unwrap();
            prop_assert_eq!(h.k, reference.k);
            for (a, b) in h.scores.iter().zip(&reference.scores) {
                prop_assert!(close(*a, *b, 1.0), "{} {} vs {}", backend, a, b);
            }
        }
        check_against_oracle(Backend::Scalar, &x, rows, cols, &q, nq, dim, k);
    }
}

#[test]
fn large_k_guessed_floor_and_its_fallback_match_oracle() {
    // 8192 rows: the scan guesses each query's floor from a sample of every 16th row
    // (k = 300 is expected at rank ~19 of the 512 sampled rows).
    let (rows, cols, k) = (8192usize, 16usize, 300usize);
    let q = data(3 * cols, 77);
    let random = data(rows * cols, 78);
    // Adversarial: the sampled rows (every 16th) are the best rows of query 0, so its guess
    // is reached by only ~48 rows and the scan must start again without it.
    let mut skewed = random.clone();
    for r in (0..rows).step_by(16) {
        for c in 0..cols {
            skewed[r * cols + c] = q[c] + 0.01 * random[r * cols + c];
        }
    }
    for backend in available() {
        for x in [&random, &skewed] {
            for nq in [1usize, 3] {
                check_against_oracle(backend, x, rows, cols, &q[..nq * cols], nq, cols, k);
            }
            // The batch path and the one-query path agree bitwise here too.
            let m = Matrix::from_slice(x, rows, cols).unwrap();
            let kern = Kernels::new(backend).unwrap();
            let batch = topk_with(kern, Queries::new(&q, cols).unwrap(), &m, 16, k as i64).unwrap();
            for j in 0..3 {
                let one = Queries::new(&q[j * cols..(j + 1) * cols], cols).unwrap();
                let single = topk_with(kern, one, &m, 16, k as i64).unwrap();
                assert_eq!(&batch.scores[j * k..(j + 1) * k], &single.scores[..]);
                assert_eq!(&batch.indices[j * k..(j + 1) * k], &single.indices[..]);
            }
        }
    }
}

#[test]
fn segment_by_segment_walk_equals_row_by_row_bitwise() {
    // Four runs of odd widths (3, 13, 16, 5 columns), each with its own base and row stride,
    // as a prefix-blocked file has them.
    let (rows, widths) = (40usize, [3usize, 13, 16, 5]);
    let cols: usize = widths.iter().sum();
    let blocks: Vec<Vec<f32>> = widths
        .iter()
        .enumerate()
        .map(|(b, &w)| data(rows * (w + 2), 300 + b as u64))
        .collect();
    let mut col = 0;
    let segments = widths
        .iter()
        .zip(&blocks)
        .map(|(&w, blk)| {
            col += w;
            Segment::new(col - w, w, blk.as_ptr(), (w + 2) as isize)
        })
        .collect();
    // SAFETY: segment b's row r is blocks[b][r * (w + 2)..][..w], inside the block for r < rows.
    let m = unsafe { Matrix::from_segments(rows, cols, segments) };
    let q = data(cols, 9);
    for backend in available() {
        let kern = Kernels::new(backend).unwrap();
        for dim in [1, 3, 4, 16, 20, 32, cols] {
            let p = m.prefix(dim);
            let dense: Vec<usize> = (0..rows).collect();
            let (mut d, mut n) = (vec![0.0; rows], vec![0.0; rows]);
            kern.dot_norm(&q, &p, &dense, &mut d, &mut n); // one segment at a time
            for i in 0..rows {
                let far = [i, (i + rows / 2) % rows]; // scattered: one row at a time
                let (mut d1, mut n1) = ([0.0; 2], [0.0; 2]);
                kern.dot_norm(&q, &p, &far, &mut d1, &mut n1);
                assert_eq!((d[i], n[i]), (d1[0], n1[0]), "{backend} dim {dim} row {i}");
            }
            // A batch over the runs (copied into whole chunks) agrees too.
            let qs = data(20 * dim, 10);
            check_batch_dots(&kern, &p, &dense, &qs, 20);
        }
    }
}

#[test]
fn long_adjacent_rows_read_one_by_one_equal_tiles_bitwise() {
    // Full-width rows of 256 columns and more, one after another in memory: `dot_norm` reads
    // them one row at a time (one sequential stream) with 16-lane vectors (AVX-512), in
    // four-row tiles with narrower ones. Rows scattered over the matrix take the
    // four-row tiles; the values must agree bitwise, with the batch kernel too, and with the
    // scalar reference within rounding.
    let scalar = Kernels::new(Backend::Scalar).unwrap();
    for cols in [256usize, 259, 320] {
        let rows = 23;
        let x = data(rows * cols, 500 + cols as u64);
        let m = Matrix::from_slice(&x, rows, cols).unwrap();
        let p = m.prefix(cols);
        let q = data(cols, 11);
        let dense: Vec<usize> = (0..rows).collect();
        for backend in available() {
            let kern = Kernels::new(backend).unwrap();
            let (mut d, mut n) = (vec![0.0; rows], vec![0.0; rows]);
            kern.dot_norm(&q, &p, &dense, &mut d, &mut n);
            let (mut d0, mut n0) = (vec![0.0; rows], vec![0.0; rows]);
            scalar.dot_norm(&q, &p, &dense, &mut d0, &mut n0);
            for i in 0..rows {
                // Rows far apart (not dense): the tiled pass, one row at a time.
                let far = [i, (i + rows / 2) % rows, (i + 3) % rows, (i + 17) % rows];
                let (mut d1, mut n1) = ([0.0; 4], [0.0; 4]);
                kern.dot_norm(&q, &p, &far, &mut d1, &mut n1);
                assert_eq!(
                    (d[i], n[i]),
                    (d1[0], n1[0]),
                    "{backend} cols {cols} row {i}"
                );
                let what = format!("{backend} cols {cols} row {i}");
                assert_close_pair((d[i], n[i]), (d0[i], n0[i]), cols, &what);
            }
            let qs = data(20 * cols, 12);
            check_batch_dots(&kern, &p, &dense, &qs, 20);
        }
    }
}
