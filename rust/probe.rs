//! Machine probes for the benchmarks (`benches/bench_quant.py`): the Hamming kernel's peak on
//! cache-resident rows, and the time to read a buffer once from memory, both on every thread
//! of the pool. They give the 1-bit scan its floors: compute at large batches, bandwidth at
//! batch 1. They time only themselves; nothing here is used by a search.

use std::hint::black_box;
use std::time::Instant;

use rayon::prelude::*;

use crate::kernels::quant::{BitSeg, CodeSeg, QuantKernels, HAM_ROWS};
use crate::kernels::Kernels;
use crate::pool;
use crate::Result;

/// Rows of the cache-resident block the popcount probe scores (as a scan's block).
const PROBE_ROWS: usize = 1024;

/// Query-word popcounts per second (`XOR` + popcount + add of one row word against one
/// query word) of the active backend's Hamming kernel on `PROBE_ROWS` cache-resident rows
/// of `words` words against `nq` queries, on every pool thread at once; the best of `rounds`.
pub fn popcount_peak(nq: usize, words: usize, rounds: usize) -> Result<f64> {
    let qk = QuantKernels::new(Kernels::active()?.backend());
    let (nq, words) = (nq.max(1), words.max(1));
    let threads = pool::current_threads();
    let reps = (50_000_000 / (PROBE_ROWS * nq * words)).max(1);
    let one = |t: usize| -> f64 {
        let codes: Vec<u8> = (0..PROBE_ROWS * words * 8)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> (t % 7)) as u8)
            .collect();
        let seg = CodeSeg {
            col: 0,
            width: words * 64,
            base: codes.as_ptr(),
            stride: words * 8,
        };
        let bits = BitSeg::of(&[seg]);
        let qt: Vec<u64> = (0..words * nq)
            .map(|i| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let rows: Vec<usize> = (0..PROBE_ROWS).collect();
        let mut scratch = vec![0u64; HAM_ROWS * words];
        let mut out = vec![0u32; PROBE_ROWS * nq];
        let t0 = Instant::now();
        for _ in 0..reps {
            qk.hamming(
                (&bits, PROBE_ROWS),
                black_box(&qt),
                nq,
                &rows,
                &mut scratch,
                &mut out,
            );
            black_box(&mut out);
        }
        t0.elapsed().as_secs_f64()
    };
    let mut best = f64::MAX;
    for _ in 0..rounds.max(1) {
        let t0 = Instant::now();
        let _: Vec<f64> = pool::install(|| (0..threads).into_par_iter().map(one).collect());
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok((threads * reps * PROBE_ROWS * nq * words) as f64 / best)
}

/// Seconds to read `bytes` bytes once (sum of their words) on every pool thread at once, each
/// thread its share; a buffer allocated and written before timing; the best of `rounds`.
pub fn read_seconds(bytes: usize, rounds: usize) -> f64 {
    let threads = pool::current_threads();
    let words = bytes.div_ceil(8).max(threads);
    let buf: Vec<u64> = (0..words as u64).collect();
    let share = words.div_ceil(threads);
    let mut best = f64::MAX;
    for _ in 0..rounds.max(1) {
        let t0 = Instant::now();
        let sums: Vec<u64> = pool::install(|| {
            buf.par_chunks(share)
                .map(|c| {
                    let mut acc = [0u64; 8];
                    for w in c.chunks_exact(8) {
                        for (a, &x) in acc.iter_mut().zip(w) {
                            *a = a.wrapping_add(x);
                        }
                    }
                    acc.iter().fold(0u64, |s, &a| s.wrapping_add(a))
                })
                .collect()
        });
        black_box(sums);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    best
}
