//! Which processes to probe and where their TLS library is: a scan of
//! `/proc` for PBX processes (by command name) or the PIDs the operator
//! named, and of each one's `/proc/PID/maps` for OpenSSL's libssl. The
//! library is opened through `/proc/PID/root`, so a PBX in a container
//! (another mount namespace) is probed at the file it really maps.

use std::fs;
use std::path::{Path, PathBuf};

/// Command names (`/proc/PID/comm`) of the PBXs probed by default.
pub(crate) const PBX_COMMANDS: [&str; 4] = ["asterisk", "freeswitch", "kamailio", "opensips"];

/// A process that maps a TLS library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsProcess {
    pub pid: u32,
    pub comm: String,
    /// The library as the process names it (its own mount namespace).
    pub library: PathBuf,
    /// The same file from here: `/proc/PID/root/<library>`.
    pub library_here: PathBuf,
    /// libcrypto beside it (holds the version text), from here.
    pub crypto_here: Option<PathBuf>,
}

/// The processes to probe: every PBX process when `pids` is empty, else
/// exactly those PIDs.
pub(crate) fn candidate_pids(proc_root: &Path, pids: &[u32]) -> Vec<(u32, String)> {
    if !pids.is_empty() {
        return pids
            .iter()
            .filter_map(|&pid| Some((pid, comm(proc_root, pid)?)))
            .collect();
    }
    let Ok(dir) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut out: Vec<(u32, String)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let c = comm(proc_root, pid)?;
            PBX_COMMANDS.contains(&c.as_str()).then_some((pid, c))
        })
        .collect();
    out.sort_unstable();
    out
}

fn comm(proc_root: &Path, pid: u32) -> Option<String> {
    let c = fs::read_to_string(proc_root.join(format!("{pid}/comm"))).ok()?;
    Some(c.trim_end().to_owned())
}

/// Where `pid` maps OpenSSL's libssl (and libcrypto), if it does.
pub(crate) fn tls_library(proc_root: &Path, pid: u32, comm: String) -> Option<TlsProcess> {
    let maps = fs::read_to_string(proc_root.join(format!("{pid}/maps"))).ok()?;
    let (ssl, crypto) = libraries_in_maps(&maps);
    let library = PathBuf::from(ssl?);
    let root = proc_root.join(format!("{pid}/root"));
    let library_here = root.join(library.strip_prefix("/").ok()?);
    if !library_here.exists() {
        return None;
    }
    Some(TlsProcess {
        pid,
        comm,
        library,
        library_here,
        crypto_here: crypto.and_then(|c| Some(root.join(Path::new(c).strip_prefix("/").ok()?))),
    })
}

/// The paths of libssl and libcrypto in a `/proc/PID/maps` text.
pub(crate) fn libraries_in_maps(maps: &str) -> (Option<&str>, Option<&str>) {
    let (mut ssl, mut crypto) = (None, None);
    for line in maps.lines() {
        // address perms offset dev inode path
        let Some(path) = line.split_whitespace().nth(5) else {
            continue;
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        if ssl.is_none() && name.starts_with("libssl.so") {
            ssl = Some(path);
        } else if crypto.is_none() && name.starts_with("libcrypto.so") {
            crypto = Some(path);
        }
    }
    (ssl, crypto)
}

/// OpenSSL's version text (`OPENSSL_VERSION_TEXT`, e.g. "OpenSSL 3.0.19
/// 27 Jan 2026") found in libcrypto's bytes; else the soname's version.
pub(crate) fn library_version(process: &TlsProcess) -> String {
    let text = process
        .crypto_here
        .as_deref()
        .and_then(|p| fs::read(p).ok())
        .and_then(|bytes| version_text(&bytes));
    if let Some(t) = text {
        return t;
    }
    let name = process
        .library
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("libssl");
    match name.split_once(".so.") {
        Some((_, v)) => format!("OpenSSL {v}"),
        None => "OpenSSL (version unknown)".to_owned(),
    }
}

/// "OpenSSL X.Y.Z[letter]" at the first place it occurs in `bytes`.
pub(crate) fn version_text(bytes: &[u8]) -> Option<String> {
    const NEEDLE: &[u8] = b"OpenSSL ";
    let mut from = 0;
    while let Some(at) = find(&bytes[from..], NEEDLE) {
        let start = from + at;
        let rest = &bytes[start + NEEDLE.len()..];
        let n = rest
            .iter()
            .take(16)
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'.')
            .count();
        let v = &rest[..n];
        if v.first().is_some_and(u8::is_ascii_digit)
            && v.iter().filter(|c| **c == b'.').count() >= 2
        {
            return Some(format!("OpenSSL {}", String::from_utf8_lossy(v)));
        }
        from = start + NEEDLE.len();
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a80000 r--p 00000000 08:01 1234 /usr/sbin/kamailio
7f1c2a000000-7f1c2a080000 r-xp 00020000 08:01 5678 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c2b000000-7f1c2b300000 r-xp 00080000 08:01 5679 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0 [stack]
";

    #[test]
    fn libssl_and_libcrypto_are_found_in_the_maps() {
        let (ssl, crypto) = libraries_in_maps(MAPS);
        assert_eq!(ssl, Some("/usr/lib/x86_64-linux-gnu/libssl.so.3"));
        assert_eq!(crypto, Some("/usr/lib/x86_64-linux-gnu/libcrypto.so.3"));
        assert_eq!(
            libraries_in_maps("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libc.so.6\n"),
            (None, None)
        );
    }

    #[test]
    fn the_version_text_is_read_past_lookalikes() {
        let bytes = b"\0OpenSSL error\0OpenSSL 3.0.19 27 Jan 2026\0";
        assert_eq!(version_text(bytes).as_deref(), Some("OpenSSL 3.0.19"));
        assert_eq!(
            version_text(b"OpenSSL 1.1.1w  11 Sep 2023").as_deref(),
            Some("OpenSSL 1.1.1w")
        );
        assert_eq!(version_text(b"no version here"), None);
    }
}
