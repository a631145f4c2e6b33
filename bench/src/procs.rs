//! CPU time and memory of the processes under test, read from /proc.

/// Clock ticks per second of /proc/PID/stat times (`getconf CLK_TCK`; 100 on Linux).
const TICKS: f64 = 100.0;

/// User + system CPU seconds of `pid` so far.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the state field here.
    (ticks(11) + ticks(12)) / TICKS
}

/// Resident memory of `pid` in KiB.
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `pid` and its children (nginx's master and workers).
pub fn with_children(pid: u32) -> Vec<u32> {
    // Workers appear shortly after the master; wait for them.
    for _ in 0..100 {
        let children: Vec<u32> =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect();
        if !children.is_empty() {
            let mut all = vec![pid];
            all.extend(children);
            return all;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    vec![pid]
}
