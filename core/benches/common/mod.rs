//! What the core's benchmarks share: their arguments, the median of round
//! rates and the CPU line of their reports.

/// The median of `xs` (the mean of the middle two for an even count).
pub fn median(xs: &[f64]) -> f64 {
    let mut r = xs.to_vec();
    r.sort_by(f64::total_cmp);
    let n = r.len();
    if n % 2 == 1 {
        r[n / 2]
    } else {
        (r[n / 2 - 1] + r[n / 2]) / 2.0
    }
}

/// The CPU model as `/proc/cpuinfo` names it.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The benchmark's arguments: `None` when run without `--bench` (as `cargo
/// test --benches` does: a smoke run), else whether `--quick` (or
/// `KAIROS_BENCH_QUICK=1`) asks for a short run, and the arguments that do
/// not start with `--`.
pub fn bench_args() -> Option<(bool, Vec<String>)> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return None;
    }
    let quick = args.iter().any(|a| a == "--quick") || std::env::var_os("KAIROS_BENCH_QUICK").is_some_and(|v| v != "0");
    Some((quick, args.into_iter().filter(|a| !a.starts_with("--")).collect()))
}

/// Prints the CPU line of a report.
pub fn print_cpu() {
    println!(
        "cpu: {} ({} logical cpus)",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}
