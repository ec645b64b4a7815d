//! CPU time spent by processes, read from Linux's `/proc`: this process
//! (every thread), and others named by pid (a database server's postmaster)
//! with their children — live ones and those they have reaped — so a
//! benchmark can give the CPU per unit of work of each part it drives.

use std::time::Duration;

/// `/proc` counts in USER_HZ, which Linux fixes at 100 for user space.
const TICKS_PER_SEC: u64 = 100;

/// CPU time (user + system) of this process, every thread. `None` where
/// `/proc` cannot be read (not Linux).
pub fn own_cpu_time() -> Option<Duration> {
    Some(ticks(stat_fields(std::process::id())?.own))
}

/// CPU time of each of `pids` with its children, live and reaped.
pub fn tree_cpu_time(pids: &[u32]) -> Option<Duration> {
    let all = all_stats();
    let mut total = 0;
    for &pid in pids {
        let top = stat_fields(pid)?;
        total += top.own + top.reaped;
        total += all
            .iter()
            .filter(|s| s.ppid == pid)
            .map(|s| s.own)
            .sum::<u64>();
    }
    Some(ticks(total))
}

fn ticks(n: u64) -> Duration {
    Duration::from_millis(n * 1000 / TICKS_PER_SEC)
}

struct Stat {
    ppid: u32,
    /// utime + stime: every thread of the process.
    own: u64,
    /// cutime + cstime: children it waited for.
    reaped: u64,
}

fn all_stats() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat_fields)
        .collect()
}

fn stat_fields(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// The fields after the command name, which may hold spaces and parentheses
/// (so the last `)` ends it): state is the 3rd field of the line, ppid the
/// 4th, utime..cstime the 14th..17th.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    let num = |i: usize| f.get(i - 3)?.parse::<u64>().ok();
    Some(Stat {
        ppid: num(4)? as u32,
        own: num(14)? + num(15)?,
        reaped: num(16)? + num(17)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_past_a_command_name_with_spaces_and_parentheses() {
        let line = "4242 (post gres (x)) S 17 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 31 7 5 20 0 1 0 100 1000 50 0 0 0";
        let s = parse_stat(line).expect("parsed");
        assert_eq!((s.ppid, s.own, s.reaped), (17, 281, 12));
    }

    #[test]
    fn this_process_spends_cpu_that_is_counted() {
        let Some(before) = own_cpu_time() else {
            return; // no /proc here
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut x = 0u64;
        while own_cpu_time().unwrap() < before + Duration::from_millis(30) {
            assert!(std::time::Instant::now() < deadline, "CPU time never grew");
            for i in 0..100_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
        }
    }

    #[test]
    fn a_parent_is_charged_for_the_children_it_reaped() {
        let me = std::process::id();
        let Some(before) = stat_fields(me) else {
            return; // no /proc here
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while stat_fields(me).unwrap().reaped == before.reaped {
            assert!(
                std::time::Instant::now() < deadline,
                "children's CPU never counted"
            );
            let busy = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done";
            let status = std::process::Command::new("sh")
                .args(["-c", busy])
                .status()
                .expect("sh runs");
            assert!(status.success());
        }
        let reaped = ticks(stat_fields(me).unwrap().reaped);
        assert!(tree_cpu_time(&[me]).unwrap() >= reaped + own_cpu_time().unwrap());
    }
}
