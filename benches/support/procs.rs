//! Reading processes' CPU time and memory from `/proc`, and the machine's
//! commit-rate ceiling from pgbench: what the benchmarks print beside their
//! own figures.

/// CPU seconds (user + system) a process has used, and its peak resident
/// memory in KiB (`VmHWM`); `None` when it is gone.
pub fn usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some((ticks / clock_ticks(), hwm))
}

fn clock_ticks() -> f64 {
    // CLK_TCK is 100 on every Linux this runs on; getconf would say so too.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds every PostgreSQL process of this machine has used so far:
/// live backends, plus what the postmaster's exited children left it.
/// `None` when PostgreSQL does not run here.
pub fn postgres_cpu() -> Option<f64> {
    let mut ticks = 0.0;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if &stat[open + 1..close] != "postgres" {
            continue;
        }
        found = true;
        let f: Vec<f64> = stat[close + 2..].split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
        ticks += f[11] + f[12];
        let parent = std::fs::read_to_string(format!("/proc/{}/stat", f[1] as u64)).unwrap_or_default();
        if !parent.contains("(postgres)") {
            ticks += f[13] + f[14]; // the postmaster: its reaped backends
        }
    }
    found.then(|| ticks / clock_ticks())
}

/// pgbench's one-row-insert rate on this machine (`scripts/pgbench-insert
/// CLIENTS SECONDS`), in transactions per second.
pub fn pgbench_insert(clients: u32, seconds: u32) -> Option<f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pgbench-insert");
    let out =
        std::process::Command::new("bash").args([script, &clients.to_string(), &seconds.to_string()]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("tps = "))?;
    line.trim_start_matches("tps = ").split_whitespace().next()?.parse().ok()
}
