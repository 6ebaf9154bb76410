//! `bench run --pin`: the load generator on one CPU, the system under test on another, so the
//! two do not take turns on the same core and a comparison of servers (treuhand, nginx) is not
//! a comparison of how the scheduler placed them.
//!
//! - the bench process itself (the load generator, its pacer thread and the trustee RTT
//!   relays, which stand for the network) runs on the *client* CPU;
//! - the proxy, its trustees (they are part of the system under test: a release is work the
//!   deployment does per request), and nginx's master and worker run on the *system* CPU;
//! - an S3 backend given with `--backend-env` (and the `direct` scenario, which measures it)
//!   is not started by the bench and is not pinned.
//!
//! Affinity is set with `taskset` from util-linux (essential in Debian), not with
//! `sched_setaffinity` directly: the crate forbids `unsafe`, and no dependency offers a safe
//! call. A process is pinned with `taskset -a -p`, which sets every thread it has; threads it
//! starts later inherit the affinity of the thread that starts them. Each pin is read back from
//! `/proc/PID/task/*/status`, and what was read back goes into `manifest.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Where `--pin` puts the load generator and the system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinning {
    /// The bench process (load generator, relays).
    pub client: usize,
    /// The proxy, the trustees, nginx.
    pub system: usize,
}

impl Pinning {
    /// The first two CPUs this process may run on: the generator on the first, the system
    /// under test on the second (CPU 0 and CPU 1 on the project's 2-vCPU machine).
    ///
    /// # Errors
    /// Fewer than two CPUs allowed, or `/proc/self/status` unreadable.
    pub fn plan() -> anyhow::Result<Self> {
        let cpus = affinity(std::process::id())
            .ok_or_else(|| anyhow::anyhow!("--pin: cannot read /proc/self/status"))?;
        match cpus.as_slice() {
            [client, system, ..] => Ok(Self {
                client: *client,
                system: *system,
            }),
            _ => anyhow::bail!(
                "--pin needs two CPUs (one for the load generator, one for the system under \
                 test); this process may run on {cpus:?} only"
            ),
        }
    }
}

/// Parses a kernel CPU list such as `0-2,5` (as in `Cpus_allowed_list`), ascending.
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = BTreeSet::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?);
                if a > b || b - a > 4096 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => {
                cpus.insert(part.parse().ok()?);
            }
        }
    }
    Some(cpus.into_iter().collect())
}

fn cpus_of_status(status: &str) -> Option<Vec<usize>> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(parse_cpu_list)
}

/// The CPUs process `pid` (its main thread) may run on; `None` if it is gone.
pub fn affinity(pid: u32) -> Option<Vec<usize>> {
    cpus_of_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The CPUs each thread of `pid` may run on, by thread id.
fn thread_affinities(pid: u32) -> BTreeMap<u32, Option<Vec<usize>>> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return BTreeMap::new();
    };
    tasks
        .filter_map(|t| t.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .map(|tid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"));
            (tid, status.ok().and_then(|s| cpus_of_status(&s)))
        })
        .collect()
}

/// Pins every thread of process `pid` to `cpu` and checks it.
///
/// `taskset -a` walks the threads one by one, so a thread started while it walks can keep the
/// old affinity; the check catches that and pins again (three tries).
///
/// # Errors
/// `taskset` missing or failing, or a thread still elsewhere after three tries.
pub fn pin_process(pid: u32, cpu: usize, what: &str) -> anyhow::Result<()> {
    for _ in 0..3 {
        let output = Command::new("taskset")
            .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
            .output()
            .map_err(|e| {
                anyhow::anyhow!(
                    "--pin: cannot run taskset ({e}); install it: sudo apt-get install util-linux"
                )
            })?;
        anyhow::ensure!(
            output.status.success(),
            "--pin: taskset could not pin {what} (pid {pid}) to CPU {cpu}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let threads = thread_affinities(pid);
        if !threads.is_empty()
            && threads
                .values()
                .all(|cpus| cpus.as_deref() == Some(&[cpu][..]))
        {
            return Ok(());
        }
    }
    anyhow::bail!("--pin: {what} (pid {pid}) still has threads off CPU {cpu} after three tries")
}

/// A command that runs `program` on `cpu` only (`taskset -c CPU PROGRAM`), so it and every
/// process it forks (nginx's worker) start there.
pub fn command_on(cpu: usize, program: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("taskset");
    command.arg("-c").arg(cpu.to_string()).arg(program);
    command
}

/// What the pins of a run turned out to be, as read back from `/proc`: per role (`proxy`,
/// `trustee`, `nginx worker`, ...), every CPU list seen over all stacks.
#[derive(Debug, Default)]
pub struct Observed(BTreeMap<String, BTreeSet<String>>);

impl Observed {
    /// Reads the affinity of `pid` now and records it under `role`.
    pub fn record(&mut self, role: &str, pid: u32) {
        let seen = affinity(pid).map_or_else(
            || "gone".to_owned(),
            |cpus| {
                cpus.iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            },
        );
        self.0.entry(role.to_owned()).or_default().insert(seen);
    }

    /// The manifest's `pinning` entry.
    pub fn manifest(&self, pinning: Option<Pinning>) -> serde_json::Value {
        match pinning {
            None => serde_json::json!({ "enabled": false }),
            Some(p) => serde_json::json!({
                "enabled": true,
                "client_cpu": p.client,
                "system_cpu": p.system,
                "client": "the bench process: load generator, open-loop pacer, trustee RTT relays",
                "system": "proxy, trustees, nginx master and worker",
                "not_pinned": "an S3 backend from --backend-env (and the direct scenario)",
                "observed": self.0,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_ranges_and_singles_in_order() {
        assert_eq!(parse_cpu_list("0-1"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("5,0-2\n"), Some(vec![0, 1, 2, 5]));
        assert_eq!(parse_cpu_list("3"), Some(vec![3]));
        assert_eq!(parse_cpu_list("2-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn own_affinity_is_readable_and_not_empty() {
        assert!(!affinity(std::process::id()).unwrap().is_empty());
    }

    #[test]
    fn the_manifest_entry_says_whether_pinning_was_on_and_what_was_seen() {
        let off = Observed::default().manifest(None);
        assert_eq!(off, serde_json::json!({ "enabled": false }));
        let mut seen = Observed::default();
        seen.record("load generator", std::process::id());
        let on = seen.manifest(Some(Pinning {
            client: 0,
            system: 1,
        }));
        assert_eq!(on["enabled"], true);
        assert_eq!(on["system_cpu"], 1);
        assert_eq!(
            on["observed"]["load generator"].as_array().unwrap().len(),
            1
        );
    }
}
