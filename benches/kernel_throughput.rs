//! The batch kernel alone, on one core, on cache-resident panels: multiply-adds per second at
//! several prefix widths (`make bench-kernel`). It shows how close `panel_dots` comes to the
//! core's FMA peak; no peer, no memory traffic, nothing to compare across machines.
//!
//! Each width packs one block of rows, the size a scan uses (48 Ki floats), and times 64 queries
//! against it; the best of 60 rounds of ~20 M multiply-adds is reported (the host is shared).

use std::time::Instant;

use matryo_fast::kernels::Panels;
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
    panels: Panels,
    queries: matryo_fast::kernels::PanelQueries,
    reps: usize,
    best: f64,
}

fn main() -> matryo_fast::Result<()> {
    let kernels = Kernels::active()?;
    println!("backend {}, one thread", kernels.backend());
    let nq = 64;
    let mut widths = Vec::new();
    for dim in [64usize, 128, 256, 768] {
        let rows = (48 * 1024 / dim).max(16);
        let x = values(rows * dim, 1);
        let m = Matrix::from_slice(&x, rows, dim)?;
        let p = m.prefix(dim);
        let idx: Vec<usize> = (0..rows).collect();
        let mut panels = Panels::new();
        kernels.pack(&p, &idx, &mut panels);
        let queries = kernels.panel_queries(&p, &values(nq * dim, 2), nq);
        let reps = 20_000_000 / (rows * dim * nq) + 1;
        let best = f64::MAX;
        widths.push(Width {
            dim,
            rows,
            panels,
            queries,
            reps,
            best,
        });
    }
    // Rounds over every width, so that a noisy spell of the host touches them all alike.
    for _ in 0..60 {
        for w in &mut widths {
            let stride = w.panels.padded_rows();
            let groups = w.panels.groups();
            let mut out = vec![0.0f32; nq * stride];
            let scales = vec![1.0f32; stride];
            // No row passes an infinite threshold: the kernel alone is timed.
            let thr = vec![f32::INFINITY; nq];
            let mut masks = vec![0u32; nq * groups];
            let t0 = Instant::now();
            for _ in 0..w.reps {
                kernels.panel_dots(
                    &w.queries, 0, nq, &w.panels, &mut out, stride, &scales, &thr, &mut masks,
                    groups,
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
