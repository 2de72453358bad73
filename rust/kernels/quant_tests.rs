//! Every available backend's quantized kernels against the scalar build, and the scalar
//! build against plain bit-by-bit and float64 computations written here.

use proptest::prelude::*;

use super::{bit_words, BitSeg, CodeSeg, Int8Job, Int8Out, QuantKernels, HAM_ROWS};
use crate::blocked::pack_bits;
use crate::kernels::tests::data as values;
use crate::kernels::{available, Backend};

/// Widths around byte, word and vector boundaries.
const WIDTHS: [usize; 17] = [
    1, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 100, 127, 128, 129, 256, 300,
];

/// `(first column, width, row stride in bytes)` of each block.
type Segs = Vec<(usize, usize, usize)>;

/// Blocks of `widths` over `rows` rows of `x` (`rows x cols`), each packed (binary) or as
/// codes, with their segments.
fn blocks(x: &[f32], rows: usize, widths: &[usize], binary: bool) -> (Vec<Vec<u8>>, Segs) {
    let cols: usize = widths.iter().sum();
    let (mut out, mut segs, mut col) = (Vec::new(), Vec::new(), 0);
    for &w in widths {
        let mut b = Vec::new();
        for r in 0..rows {
            let vals = &x[r * cols + col..r * cols + col + w];
            if binary {
                pack_bits(vals, &mut b);
            } else {
                b.extend(vals.iter().map(|v| (v * 127.0) as i8 as u8));
            }
        }
        segs.push((col, w, if binary { w.div_ceil(8) } else { w }));
        out.push(b);
        col += w;
    }
    (out, segs)
}

fn code_segs(bufs: &[Vec<u8>], segs: &[(usize, usize, usize)], dim: usize) -> Vec<CodeSeg> {
    bufs.iter()
        .zip(segs)
        .filter(|(_, s)| s.0 < dim)
        .map(|(b, &(col, width, stride))| CodeSeg {
            col,
            width: width.min(dim - col),
            base: b.as_ptr(),
            stride,
        })
        .collect()
}

/// Bit-by-bit Hamming distance of the signs of two value prefixes.
fn naive_hamming(a: &[f32], b: &[f32]) -> u32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| u32::from((*x > 0.0) != (*y > 0.0)))
        .sum()
}

/// The queries' words, transposed, as `quant.rs` builds them (through `row_words` on the
/// packed query).
fn query_words(
    q: &[f32],
    nq: usize,
    cols: usize,
    widths: &[usize],
    dim: usize,
) -> (Vec<u64>, Vec<u64>) {
    let (bufs, segs) = blocks(q, nq, widths, true);
    let cs = BitSeg::of(&code_segs(&bufs, &segs, dim));
    let words = bit_words(&cs);
    let mut qw = vec![0u64; nq * words];
    for j in 0..nq {
        // SAFETY: row j < nq rows of the packed buffers.
        unsafe { super::row_words(&cs, j, &mut qw[j * words..(j + 1) * words]) };
    }
    let mut qt = vec![0u64; nq * words];
    for j in 0..nq {
        for w in 0..words {
            qt[w * nq + j] = qw[j * words + w];
        }
    }
    let _ = cols;
    (qw, qt)
}

#[test]
fn hamming_every_backend_equals_bit_by_bit() {
    for backend in available() {
        let k = QuantKernels::new(backend);
        for &cols in &WIDTHS {
            let widths: Vec<usize> = if cols > 64 {
                vec![64, cols - 64]
            } else {
                vec![cols]
            };
            for rows in [1usize, 5, 33] {
                for nq in [1usize, 3, 8, 17, 64] {
                    let x = values(rows * cols, (cols * 7 + rows) as u64);
                    let q = values(nq * cols, (cols * 13 + nq) as u64 + 99);
                    let (bufs, segs) = blocks(&x, rows, &widths, true);
                    for dim in [cols, (cols / 2).max(1), (cols * 3 / 4).max(1)] {
                        let cs = BitSeg::of(&code_segs(&bufs, &segs, dim));
                        let (_, qt) = query_words(&q, nq, cols, &widths, dim);
                        let mut scratch = vec![0u64; HAM_ROWS * bit_words(&cs)];
                        let mut out = vec![0u32; rows * nq];
                        let idx: Vec<usize> = (0..rows).rev().collect();
                        k.hamming((&cs, rows), &qt, nq, &idx, &mut scratch, &mut out);
                        for (i, &r) in idx.iter().enumerate() {
                            for j in 0..nq {
                                let want = naive_hamming(
                                    &q[j * cols..j * cols + dim],
                                    &x[r * cols..r * cols + dim],
                                );
                                assert_eq!(
                                    out[i * nq + j],
                                    want,
                                    "{} cols {cols} dim {dim} nq {nq}",
                                    k.name()
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn hamming_run_every_backend_equals_bit_by_bit() {
    // Layouts of whole-word runs (1, 2, 3, 4, 8 words and their sums; packed blocks, read
    // row-vectorized, and cut ones) and partial words, cut at dims inside and at the block
    // edges; runs of consecutive rows from several starts, short and long enough for the
    // vectorized loops' main bodies.
    let layouts: [&[usize]; 7] = [
        &[64],
        &[128, 128],
        &[64, 192, 512],
        &[64, 64, 128, 512],
        &[100],
        &[960],
        &[8, 300],
    ];
    for backend in available() {
        let k = QuantKernels::new(backend);
        for (widths, rows) in layouts.into_iter().flat_map(|w| [(w, 19), (w, 150)]) {
            let cols: usize = widths.iter().sum();
            let x = values(rows * cols, cols as u64 + 5);
            let q = values(cols, cols as u64 + 77);
            let (bufs, segs) = blocks(&x, rows, widths, true);
            for dim in [1, 63, 64, 65, 128, 200, 256, cols / 2 + 1, cols] {
                if dim > cols {
                    continue;
                }
                let cs = BitSeg::of(&code_segs(&bufs, &segs, dim));
                let (qw, _) = query_words(&q, 1, cols, widths, dim);
                for first in [0, 1, 7] {
                    let mut out = vec![u32::MAX; rows - first];
                    let least = k.hamming_run((&cs, rows), &qw, first, &mut out);
                    assert_eq!(Some(&least), out.iter().min());
                    for (i, &h) in out.iter().enumerate() {
                        let r = first + i;
                        let want = naive_hamming(&q[..dim], &x[r * cols..r * cols + dim]);
                        assert_eq!(h, want, "{} widths {widths:?} dim {dim} row {r}", k.name());
                    }
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "rows out of range")]
fn hamming_run_checks_its_rows() {
    let x = values(4 * 64, 1);
    let (bufs, segs) = blocks(&x, 4, &[64], true);
    let cs = BitSeg::of(&code_segs(&bufs, &segs, 64));
    let mut out = vec![0u32; 3];
    QuantKernels::new(Backend::Scalar).hamming_run((&cs, 4), &[0u64], 2, &mut out);
}

fn int8_case(
    cols: usize,
    rows: usize,
    nq: usize,
    dim: usize,
    k: &QuantKernels,
) -> (Vec<f32>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let widths: Vec<usize> = if cols > 64 {
        vec![64, cols - 64]
    } else {
        vec![cols]
    };
    let x = values(rows * cols, cols as u64 * 3 + 1);
    let q = values(nq * dim, nq as u64 + 5);
    let start: Vec<f32> = (0..cols).map(|c| -1.0 - c as f32 / 100.0).collect();
    let step: Vec<f32> = (0..cols).map(|c| 2.0 / 255.0 + c as f32 / 1e4).collect();
    let (bufs, segs) = blocks(&x, rows, &widths, false);
    let cs = code_segs(&bufs, &segs, dim);
    let tail_from = if dim >= 64 && cols > 64 { 64 } else { 0 };
    let mut v = vec![0.0f32; dim];
    let mut out = vec![0.0f32; rows * nq];
    let mut tails = vec![0.0f64; rows];
    let idx: Vec<usize> = (0..rows).collect();
    let job = Int8Job {
        segs: &cs,
        start: &start,
        step: &step,
        qs: &q,
        nq,
        rows: &idx,
        tail_from,
        norms: std::ptr::null(),
    };
    k.int8(
        job,
        rows,
        Int8Out {
            v: &mut v,
            dots: &mut out,
            tails: &mut tails,
        },
    );
    // float64 from the codes, written independently.
    let mut want = vec![0.0f64; rows * nq];
    let mut want_tails = vec![0.0f64; rows];
    for r in 0..rows {
        let vals: Vec<f64> = (0..dim)
            .map(|c| {
                let code = (x[r * cols + c] * 127.0) as i8;
                f64::from(start[c]) + f64::from(step[c]) * (f64::from(code) + 128.5)
            })
            .collect();
        for j in 0..nq {
            want[r * nq + j] = (0..dim).map(|c| f64::from(q[j * dim + c]) * vals[c]).sum();
        }
        want_tails[r] = vals[tail_from..].iter().map(|v| v * v).sum();
    }
    let _ = &tails;
    (out, want, tails.clone(), want_tails)
}

#[test]
fn int8_every_backend_close_to_float64_and_scalar() {
    let scalar = QuantKernels::new(Backend::Scalar);
    for backend in available() {
        let k = QuantKernels::new(backend);
        for &cols in &WIDTHS {
            for dim in [cols, (cols / 2).max(1)] {
                for nq in [1usize, 4, 17] {
                    let (out, want, tails, want_tails) = int8_case(cols, 9, nq, dim, &k);
                    let (s_out, ..) = int8_case(cols, 9, nq, dim, &scalar);
                    let scale = (dim as f64).sqrt() * 4.0;
                    for i in 0..out.len() {
                        assert!(
                            (f64::from(out[i]) - want[i]).abs() <= 1e-6 * scale,
                            "{} {cols} {dim}",
                            k.name()
                        );
                        assert!((out[i] - s_out[i]).abs() as f64 <= 1e-6 * scale);
                    }
                    for (t, w) in tails.iter().zip(&want_tails) {
                        assert!((t - w).abs() <= 1e-6 * w.max(1.0), "tail {t} vs {w}");
                    }
                }
            }
        }
    }
}

#[test]
fn one_query_equals_its_lane_of_a_batch() {
    for backend in available() {
        let k = QuantKernels::new(backend);
        let (cols, nq) = (100, 5);
        let (all, ..) = int8_case(cols, 7, nq, cols, &k);
        for r in 0..7 {
            let (one, ..) = int8_case(cols, 7, nq, cols, &k);
            assert_eq!(one[r * nq..(r + 1) * nq], all[r * nq..(r + 1) * nq]);
        }
    }
}

proptest! {
    #[test]
    fn hamming_random_shapes(cols in 1usize..200, split in 0usize..4, rows in 1usize..20, nq in 1usize..20, seed in 0u64..1000) {
        // Blocks of 8 * split (a binary tier needs byte multiples but the last), then the rest.
        let first = (8 * split * 8).min(cols);
        let widths: Vec<usize> = if first == 0 || first == cols { vec![cols] } else { vec![first, cols - first] };
        let x = values(rows * cols, seed);
        let q = values(nq * cols, seed + 7);
        let (bufs, segs) = blocks(&x, rows, &widths, true);
        let dim = 1 + (seed as usize % cols);
        let cs = BitSeg::of(&code_segs(&bufs, &segs, dim));
        let (_, qt) = query_words(&q, nq, cols, &widths, dim);
        let idx: Vec<usize> = (0..rows).collect();
        for backend in available() {
            let k = QuantKernels::new(backend);
            let mut scratch = vec![0u64; HAM_ROWS * bit_words(&cs)];
            let mut out = vec![0u32; rows * nq];
            k.hamming((&cs, rows), &qt, nq, &idx, &mut scratch, &mut out);
            for r in 0..rows {
                for j in 0..nq {
                    prop_assert_eq!(out[r * nq + j], naive_hamming(&q[j * cols..j * cols + dim], &x[r * cols..r * cols + dim]));
                }
            }
        }
    }
}
