//! The paired, interleaved measurement shared by the benches: variants run
//! in rotating order within each round, so load from anything else on a
//! shared machine hits them alike, and ratios are taken within a round.

use std::future::Future;
use std::time::Instant;

use tokio::runtime::Runtime;

/// One variant's result in a paired comparison.
#[derive(Debug, Clone, Copy)]
pub struct PairedStat {
    /// Median per-call time over rounds, ns.
    pub median_ns: f64,
    /// 25th, 50th and 75th percentiles of (this variant / variant 0),
    /// each ratio taken within one round.
    pub ratio: [f64; 3],
}

/// Runs `n` variants in rotating order, `batch` calls each per round, so
/// load from anything else on this shared 2-core machine hits them alike;
/// ratios are taken within a round, where conditions were the same.
pub fn paired<F, Fut>(rt: &Runtime, n: usize, rounds: usize, batch: u32, run: F) -> Vec<PairedStat>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let times: Vec<Vec<f64>> = rt.block_on(async {
        let mut times = vec![Vec::with_capacity(rounds); n];
        for round in 0..rounds {
            for k in 0..n {
                let i = (round + k) % n;
                let start = Instant::now();
                for _ in 0..batch {
                    run(i).await;
                }
                times[i].push(start.elapsed().as_nanos() as f64 / f64::from(batch));
            }
        }
        times
    });
    let quantiles = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        [at(0.25), at(0.5), at(0.75)]
    };
    times
        .iter()
        .map(|t| PairedStat {
            median_ns: quantiles(t.clone())[1],
            ratio: quantiles(t.iter().zip(&times[0]).map(|(a, b)| a / b).collect()),
        })
        .collect()
}
