//! The funnel's re-scoring alone: one thread gathering scattered rows of a corpus file and
//! computing their dot products and norms (`Kernels::dot_norm`, what each later stage of a
//! funnel runs per query), in nanoseconds per row (`make bench-gather`): best of 15 rounds. The
//! rows are random, sorted as the funnel sorts them, and fresh in every round, so they come from
//! memory, not from the caches. The file should be in the page cache, as it is after `make
//! bench-funnel`; otherwise the first rounds read it from disk. No peer; it shows what a change
//! to the gather path does, on the file the funnel benchmark searches.
//!
//! Usage: `cargo bench --bench gather_throughput -- [FILE]` (default: the funnel benchmark's
//! split-at-64 copy); `cargo bench` also passes `--bench`, which is skipped.

use std::time::Instant;

use matryo_fast::{Kernels, NpyFile};

const DEFAULT: &str = "build/bench/mrl-clustered-v1_n1000000_d768_seed0.s64.mfb";

fn main() -> matryo_fast::Result<()> {
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_else(|| DEFAULT.to_string());
    let file = NpyFile::open(&path)?;
    let m = file.matrix().expect("a float32 tier");
    let kernels = Kernels::active()?;
    let (n, cols) = (m.rows(), m.cols());
    println!(
        "{path}: {n} x {cols}, {}; backend {}, one thread",
        file.layout(),
        kernels.backend()
    );
    // xorshift64: seeded, no dependency.
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    // (prefix width, rows per query): the stages of the funnel plans the tuner picks.
    for (dim, count) in [(128, 1000), (256, 1000), (cols, 500), (cols, 200)] {
        if dim > cols || count > n {
            continue;
        }
        let p = m.prefix(dim);
        let q: Vec<f32> = (0..dim).map(|i| (i as f32).sin()).collect();
        let (mut dots, mut norms) = (vec![0.0f32; count], vec![0.0f32; count]);
        let mut best = f64::MAX;
        for _ in 0..15 {
            // 64 queries' worth of survivors, drawn before the clock starts.
            let sets: Vec<Vec<usize>> = (0..64)
                .map(|_| {
                    let mut v: Vec<usize> =
                        (0..count).map(|_| (next() % n as u64) as usize).collect();
                    v.sort_unstable();
                    v
                })
                .collect();
            let t0 = Instant::now();
            for rows in &sets {
                kernels.dot_norm(&q, &p, rows, &mut dots, &mut norms);
            }
            best = best.min(t0.elapsed().as_secs_f64());
        }
        println!(
            "dim {dim:4}, {count:4} rows x 64 queries: {:6.2} ms, {:4.0} ns per row",
            best * 1e3,
            best * 1e9 / (64 * count) as f64
        );
    }
    Ok(())
}
