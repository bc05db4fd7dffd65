//! What benches read of a process from `/proc` (Linux): its CPU time and
//! its resident memory.

/// Clock ticks per second of `/proc/<pid>/stat`'s times (`USER_HZ`, 100 on
/// Linux for user space whatever the kernel's own tick rate).
pub const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// utime + stime of process `pid`, in seconds (0 when it cannot be read).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The name, in parentheses, may hold spaces: fields are counted after
    // its closing parenthesis, from field 3 (state); utime is 14, stime 15.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index - 3)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(14) + ticks(15)) / CLOCK_TICKS_PER_SECOND
}

/// Resident memory (`VmRSS`) of process `pid`, in MB (0 when it cannot be
/// read).
pub fn rss_megabytes(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|kilobytes| kilobytes / 1024.0)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_spent_some_cpu() {
        let mut spin = 0_u64;
        for i in 0..50_000_000_u64 {
            spin = spin.wrapping_add(i * i);
        }
        assert!(spin > 0);
        assert!(cpu_seconds(std::process::id()) > 0.0);
        assert_eq!(cpu_seconds(u32::MAX), 0.0);
    }

    #[test]
    fn this_process_has_resident_memory() {
        assert!(rss_megabytes(std::process::id()) > 0.0);
        assert_eq!(rss_megabytes(u32::MAX), 0.0);
    }
}
