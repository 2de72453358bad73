//! The batch kernel alone, on one core, on cache-resident rows: query multiply-adds per second at
//! several prefix widths (`make bench-kernel`). It shows how close `batch_dots` comes to the
//! core's FMA peak; no peer, no memory traffic, nothing to compare across machines.
//!
//! Each width times 64 queries against one block of rows, the size a scan uses (16 Ki floats);
//! the best of 60 rounds of ~20 M multiply-adds is reported (the host is shared).

use std::time::Instant;

use matryo_fast::kernels::{Batch, BatchQueries};
use matryo_fast::layout::RowCopy;
use matryo_fast::{Kernels, Matrix};

/// `n` finite values in [-1, 1] (the kernel's speed does not depend on them).
fn values(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f64 + 0.5) * (seed as f64 + 0.618)).sin() as f32)
        .collect()
}

struct Width {
    dim: usize,
    rows: usize,
    x: Vec<f32>,
    queries: BatchQueries,
    reps: usize,
    best: f64,
}

fn main() -> matryo_fast::Result<()> {
    let kernels = Kernels::active()?;
    println!("backend {}, one thread", kernels.backend());
    let nq = 64;
    let mut widths = Vec::new();
    for dim in [64usize, 128, 256, 768] {
        let rows = (16 * 1024 / dim).max(16);
        let x = values(rows * dim, 1);
        let m = Matrix::from_slice(&x, rows, dim)?;
        let queries = kernels.batch_queries(&m.prefix(dim), &values(nq * dim, 2), nq);
        let reps = 20_000_000 / (rows * dim * nq) + 1;
        widths.push(Width {
            dim,
            rows,
            x,
            queries,
            reps,
            best: f64::MAX,
        });
    }
    // Rounds over every width, so that a noisy spell of the host touches them all alike.
    for _ in 0..60 {
        for w in &mut widths {
            let m = Matrix::from_slice(&w.x, w.rows, w.dim)?;
            let p = m.prefix(w.dim);
            let idx: Vec<usize> = (0..w.rows).collect();
            let mut copy = RowCopy::default();
            let mut out = vec![0.0f32; w.rows * w.queries.padded()];
            let (mut norms, mut scales) = (vec![0.0f32; w.rows], vec![0.0f32; w.rows]);
            // No pair passes an infinite threshold: the kernel alone is timed.
            let thr = vec![f32::INFINITY; w.queries.padded()];
            let mut masks = vec![0u32; w.rows * w.queries.groups()];
            let t0 = Instant::now();
            for _ in 0..w.reps {
                kernels.batch_dots(
                    &mut Batch {
                        queries: &w.queries,
                        prefix: &p,
                        rows: &idx,
                        thr: &thr,
                        dots: &mut out,
                        norms: &mut norms,
                        scales: &mut scales,
                        masks: &mut masks,
                    },
                    &mut copy,
                );
            }
            w.best = w.best.min(t0.elapsed().as_secs_f64());
        }
    }
    for w in &widths {
        let gmacs = (w.reps * w.rows * w.dim * nq) as f64 / w.best / 1e9;
        println!(
            "dim {:4}: {gmacs:5.1} G multiply-adds/s ({} rows x {nq} queries)",
            w.dim, w.rows
        );
    }
    Ok(())
}
