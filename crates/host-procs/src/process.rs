//! The process table: `/proc/<pid>/stat` for identity, family and state, `cmdline`, `environ`
//! and `status` (resident memory) on demand.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// One process, as its `/proc/<pid>/stat` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    /// The command name (`comm`): at most 15 bytes, lossily decoded. Any byte but NUL may be in
    /// it (spaces, parentheses, newlines: a process chooses its own name).
    pub comm: String,
    /// The state letter: `R` running, `S`/`D` sleeping, `T`/`t` stopped, `Z` zombie (exited, not
    /// yet reaped by its parent), `X` dead, `I` idle kernel thread.
    pub state: char,
    pub ppid: u32,
    /// The process group.
    pub pgid: u32,
    /// The session.
    pub sid: u32,
}

impl Process {
    /// Exited and waiting for its parent to reap it: it runs nothing any more.
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }

    /// Still running code: neither a zombie nor dead (`X`, `x`: being torn down).
    pub fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// Its arguments; see [`cmdline`].
    pub fn cmdline(&self) -> io::Result<Vec<OsString>> {
        cmdline(self.pid)
    }

    /// Its environment; see [`environ`].
    pub fn environ(&self) -> io::Result<Environ> {
        environ(self.pid)
    }
}

/// Parses the text of `/proc/<pid>/stat`: `pid (comm) state ppid pgrp session ...`.
///
/// `comm` may hold anything, `)` and `(` included, so it is whatever lies between the first
/// `(` (the pid before it is digits only) and the last `)` (no later field holds one).
pub fn parse_stat(text: &[u8]) -> Option<Process> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let pid = std::str::from_utf8(&text[..open])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = String::from_utf8_lossy(&text[open + 1..close]).into_owned();
    let mut fields = std::str::from_utf8(&text[close + 1..])
        .ok()?
        .split_ascii_whitespace();
    let mut state = fields.next()?.chars();
    let (Some(state), None) = (state.next(), state.next()) else {
        return None;
    };
    let mut number = || fields.next()?.parse().ok();
    Some(Process {
        pid,
        comm,
        state,
        ppid: number()?,
        pgid: number()?,
        sid: number()?,
    })
}

/// The process `pid`, or `None` when there is none (never was, or exited and was reaped).
pub fn process(pid: u32) -> Option<Process> {
    let text = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text).filter(|p| p.pid == pid)
}

/// Whether `pid` exists and still runs code. A zombie does not: it has exited, and only its
/// parent's `wait` is missing.
pub fn is_alive(pid: u32) -> bool {
    process(pid).is_some_and(|p| p.is_alive())
}

/// Every process visible in this PID namespace. Processes that exit while the table is read
/// are left out. An error only when `/proc` itself cannot be listed: callers asking "is
/// anything left?" must not mistake that for "nothing".
pub fn processes() -> io::Result<Vec<Process>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        out.extend(process(pid));
    }
    Ok(out)
}

/// The descendants of `pid` from one reading of the table, by generation: children first,
/// then grandchildren, and so on. Killing deepest first lets each parent reap its children.
pub fn descendants(pid: u32) -> io::Result<Vec<Vec<u32>>> {
    let table = processes()?;
    // The table is not read atomically: with pid reuse it could show a cycle, so each pid is
    // taken once.
    let mut seen = HashSet::from([pid]);
    let mut levels = Vec::new();
    let mut current = vec![pid];
    loop {
        let next: Vec<u32> = table
            .iter()
            .filter(|p| current.contains(&p.ppid) && seen.insert(p.pid))
            .map(|p| p.pid)
            .collect();
        if next.is_empty() {
            return Ok(levels);
        }
        levels.push(next.clone());
        current = next;
    }
}

/// The arguments of `pid` (`argv`, as it left it: a process may rewrite them). Empty for a
/// kernel thread.
pub fn cmdline(pid: u32) -> io::Result<Vec<OsString>> {
    let text = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    Ok(split_nul(&text)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect())
}

/// The environment `pid` started with (readable by its owner and root).
pub fn environ(pid: u32) -> io::Result<Environ> {
    std::fs::read(format!("/proc/{pid}/environ")).map(Environ)
}

/// A process's environment: `NAME=value` entries, NUL-separated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environ(Vec<u8>);

impl Environ {
    pub fn from_bytes(raw: Vec<u8>) -> Self {
        Environ(raw)
    }

    /// The value of `name`, when set (the first one, should it be set twice).
    pub fn get(&self, name: &str) -> Option<&OsStr> {
        split_nul(&self.0).find_map(|entry| {
            let value = entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
            Some(OsStr::from_bytes(value))
        })
    }
}

/// Resident memory of `pid` in bytes (`VmRSS`); `None` when it is gone or has no memory of its
/// own (a kernel thread, a zombie).
pub fn resident_bytes(pid: u32) -> Option<u64> {
    status_number(pid, "VmRSS").map(|kib| kib * 1024)
}

/// The number of field `field` of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, `Threads`; memory
/// fields are in KiB); `None` when the process or the field is gone.
pub fn status_number(pid: u32, field: &str) -> Option<u64> {
    number_field(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        field,
    )
}

/// Proportional set size of `pid` in bytes (`Pss` of `/proc/<pid>/smaps_rollup`): its share of
/// the memory it shares with others.
pub fn proportional_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    number_field(&text, "Pss").map(|kib| kib * 1024)
}

/// `Field:   123 kB` → 123, in a `/proc` key-value file.
fn number_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// NUL-terminated fields (the last terminator may be missing).
fn split_nul(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    raw.strip_suffix(b"\0")
        .unwrap_or(raw)
        .split(|&b| b == 0)
        .filter(|_| !raw.is_empty())
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    fn stat(comm: &[u8], rest: &str) -> Vec<u8> {
        let mut text = b"4242 (".to_vec();
        text.extend_from_slice(comm);
        text.extend_from_slice(b") ");
        text.extend_from_slice(rest.as_bytes());
        text
    }

    const REST: &str = "S 17 4242 17 0 -1 4194560 120 0 0 0 0 0 0 0 20 0 1 0 1000 1000 100\n";

    #[test]
    fn a_plain_stat_line() {
        let p = parse_stat(&stat(b"sshd", REST)).unwrap();
        assert_eq!(
            p,
            Process {
                pid: 4242,
                comm: "sshd".into(),
                state: 'S',
                ppid: 17,
                pgid: 4242,
                sid: 17,
            }
        );
        assert!(p.is_alive() && !p.is_zombie());
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_is_taken_whole() {
        for comm in [
            &b"tmux: server"[..],
            b"a) Z 1 1 1",
            b")",
            b"((",
            b"(x)",
            b") R 9 9 9 (",
            b"",
            b"two\nlines",
            b"  ",
        ] {
            let p = parse_stat(&stat(comm, REST))
                .unwrap_or_else(|| panic!("{:?}", String::from_utf8_lossy(comm)));
            assert_eq!(p.comm.as_bytes(), comm);
            assert_eq!(
                (p.pid, p.state, p.ppid, p.pgid, p.sid),
                (4242, 'S', 17, 4242, 17)
            );
        }
    }

    #[test]
    fn a_command_name_that_is_not_utf8_is_decoded_lossily() {
        let p = parse_stat(&stat(b"bad\xff)name", REST)).unwrap();
        assert_eq!(p.comm, "bad\u{fffd})name");
        assert_eq!(p.ppid, 17);
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let p = parse_stat(&stat(b"defunct) S", &REST.replacen('S', "Z", 1))).unwrap();
        assert!(p.is_zombie() && !p.is_alive());
        assert_eq!(p.comm, "defunct) S");
        let p = parse_stat(&stat(b"x", &REST.replacen('S', "X", 1))).unwrap();
        assert!(!p.is_zombie() && !p.is_alive());
    }

    #[test]
    fn truncated_or_garbled_lines_are_refused() {
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"12 (sh"), None);
        assert_eq!(parse_stat(b"12 sh) S 1 1 1"), None);
        assert_eq!(parse_stat(b") 12 ( S 1 1 1"), None);
        assert_eq!(parse_stat(b"x (sh) S 1 1 1"), None);
        assert_eq!(parse_stat(b"12 (sh) S 1 1"), None);
        assert_eq!(parse_stat(b"12 (sh) SS 1 1 1"), None);
        assert_eq!(parse_stat(b"12 (sh) S 1 x 1"), None);
        assert_eq!(parse_stat(b"12 (sh) S 1 -1 1"), None);
    }

    #[test]
    fn environ_lookup_matches_whole_names() {
        let env = Environ::from_bytes(b"ESC_SIM_ROOT=/tmp/r\0ESC_SIM=x\0EMPTY=\0A=b=c\0".to_vec());
        assert_eq!(env.get("ESC_SIM_ROOT"), Some(OsStr::new("/tmp/r")));
        assert_eq!(env.get("ESC_SIM"), Some(OsStr::new("x")));
        assert_eq!(env.get("ESC"), None);
        assert_eq!(env.get("EMPTY"), Some(OsStr::new("")));
        assert_eq!(env.get("A"), Some(OsStr::new("b=c")));
        assert_eq!(Environ::from_bytes(Vec::new()).get("A"), None);
    }

    #[test]
    fn this_process_is_in_the_table_with_its_arguments_and_environment() {
        let me = std::process::id();
        let p = process(me).unwrap();
        assert!(p.is_alive());
        assert_eq!(p.ppid, std::os::unix::process::parent_id());
        assert!(processes().unwrap().iter().any(|q| q.pid == me));
        let exe = std::env::current_exe().unwrap();
        let argv0 = cmdline(me).unwrap().remove(0);
        assert!(exe.ends_with(std::path::Path::new(&argv0).file_name().unwrap()));
        let path = std::env::var_os("PATH").unwrap();
        assert_eq!(environ(me).unwrap().get("PATH"), Some(path.as_os_str()));
        assert!(resident_bytes(me).unwrap() > 0);
    }

    #[test]
    fn a_hostile_name_set_by_a_real_process_is_read_back() {
        // `exec -a` does not change comm; the kernel takes it from the executable's file name.
        let dir = std::env::temp_dir().join(format!("host-procs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let name = "a) Z 1 (b";
        let exe = dir.join(name);
        std::fs::copy("/bin/sleep", &exe).unwrap();
        // Another test's fork may still hold (until its exec) a copy of the write descriptor
        // `copy` just closed: exec then fails with ETXTBSY for a moment. Retry, briefly.
        let mut attempts = 0;
        let mut child = loop {
            match Command::new(&exe).arg("30").stdin(Stdio::null()).spawn() {
                Err(e) if e.raw_os_error() == Some(26) && attempts < 50 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                spawned => break spawned.unwrap(),
            }
        };
        let p = process(child.id()).unwrap();
        assert_eq!((p.comm.as_str(), p.ppid), (name, std::process::id()));
        assert!(is_alive(child.id()));
        child.kill().unwrap();
        // Killed but not yet waited for: a zombie, in the table and not alive.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !process(child.id()).unwrap().is_zombie() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!is_alive(child.id()));
        child.wait().unwrap();
        assert!(process(child.id()).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn descendants_come_by_generation() {
        // sh -> sh -> sleep
        let mut child = Command::new("sh")
            .args(["-c", "sh -c 'sleep 30; true' & wait"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let levels = loop {
            let levels = descendants(child.id()).unwrap();
            if levels.len() == 2 || std::time::Instant::now() > deadline {
                break levels;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(levels.len(), 2, "{levels:?}");
        assert_eq!(process(levels[0][0]).unwrap().ppid, child.id());
        assert_eq!(process(levels[1][0]).unwrap().comm, "sleep");
        assert_eq!(process(levels[1][0]).unwrap().ppid, levels[0][0]);
        // Its process group: the children stay in the one of `sh`'s parent (this test).
        assert_eq!(
            process(levels[1][0]).unwrap().pgid,
            process(std::process::id()).unwrap().pgid
        );
        for level in levels.iter().rev() {
            for &pid in level {
                let _ = Command::new("kill")
                    .arg(pid.to_string())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        child.wait().unwrap();
    }
}

#[cfg(test)]
mod number_field_tests {
    use super::number_field;

    #[test]
    fn reads_the_named_field_only() {
        let text = "VmPeak:\t  2000 kB\nVmRSS:\t  1234 kB\nThreads:\t3\n";
        assert_eq!(number_field(text, "VmRSS"), Some(1234));
        assert_eq!(number_field(text, "Threads"), Some(3));
        // A prefix of another field's name is not that field.
        assert_eq!(number_field(text, "Vm"), None);
        assert_eq!(number_field(text, "VmHWM"), None);
        assert_eq!(number_field("VmRSS:\tlots kB\n", "VmRSS"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(super::resident_bytes(me).is_some_and(|b| b > 0));
        assert!(super::status_number(me, "Threads").is_some_and(|n| n >= 1));
        assert!(super::proportional_bytes(me).is_some_and(|b| b > 0));
    }
}
