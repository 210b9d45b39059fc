//! Keeping the per-pod helpers (`podway shim`, `podway pause`) small in memory.
//!
//! Both are the podway binary, so starting one touches code and read-only data the steady
//! state never uses again: the Rust runtime's start, argument parsing, the setup of the
//! namespaces or sockets. Those pages are shared with the page cache, but as long as they stay
//! mapped they count in the helper's RSS and the kernel keeps them as in-use memory. Once set
//! up, a helper calls [`release_clean_file_pages`]: every read-only file mapping without a
//! private copy of any page (the binary's text and constants, the C library's) is dropped from
//! its page tables with `MADV_DONTNEED`. The mapping stays; a page touched again is mapped
//! back from the file, unchanged, so only what the loop really uses comes back.
//!
//! Writable mappings, anonymous memory and any read-only mapping with private pages (the
//! relocated RELRO of a position-independent binary) are left alone: dropping those would lose
//! their contents.

/// One mapping of `/proc/self/smaps` that is safe to drop: file-backed, not writable, no
/// private (copied) page.
#[derive(Debug, PartialEq, Eq)]
struct CleanMapping {
    start: usize,
    end: usize,
}

/// Drops this process's clean read-only file pages from its page tables (see the module doc).
/// Best effort: a failure leaves the pages mapped, which costs memory, not correctness.
pub(crate) fn release_clean_file_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for m in clean_mappings(&smaps) {
        // SAFETY: the range is a whole mapping of this process that is read-only,
        // file-backed and has no anonymous (private) page, so MADV_DONTNEED only unmaps pages
        // the next access maps again from the same file contents.
        unsafe {
            libc::madvise(
                m.start as *mut libc::c_void,
                m.end - m.start,
                libc::MADV_DONTNEED,
            );
        }
    }
}

/// The mappings of an smaps text that [`release_clean_file_pages`] may drop.
fn clean_mappings(smaps: &str) -> Vec<CleanMapping> {
    // Each mapping with whether it is still a candidate, in order.
    let mut mappings: Vec<(CleanMapping, bool)> = Vec::new();
    for line in smaps.lines() {
        if let Some(header) = mapping_header(line) {
            mappings.push(header);
            continue;
        }
        let Some((_, clean)) = mappings.last_mut() else {
            continue;
        };
        let mut fields = line.split_whitespace();
        let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
            continue;
        };
        let private_key = matches!(key, "Private_Dirty:" | "Anonymous:" | "Swap:" | "Locked:");
        if private_key && value != "0" {
            *clean = false;
        }
    }
    mappings
        .into_iter()
        .filter_map(|(m, clean)| clean.then_some(m))
        .collect()
}

/// Parses a mapping's first line (`start-end perms offset dev inode path`): the range and
/// whether it is a candidate (a file path, no write permission); None for field lines.
fn mapping_header(line: &str) -> Option<(CleanMapping, bool)> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    if perms.len() != 4 {
        return None;
    }
    let path = fields.nth(3).unwrap_or("");
    let candidate = path.starts_with('/') && !perms.contains('w') && perms.ends_with('p');
    Some((CleanMapping { start, end }, candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
00200000-00900000 r--p 00000000 fe:00 10158203   /usr/bin/podway
Size:               7168 kB
Rss:                 576 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                  0 kB
Locked:                0 kB
00900000-01f79000 r-xp 006ff000 fe:00 10158203   /usr/bin/podway
Rss:                2020 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
01f79000-01f85000 r--p 01d77000 fe:00 10158203   /usr/bin/podway
Rss:                  48 kB
Private_Dirty:        48 kB
Anonymous:            48 kB
01f85000-01f91000 rw-p 01d82000 fe:00 10158203   /usr/bin/podway
Rss:                  48 kB
Private_Dirty:        12 kB
2f301000-2f324000 rw-p 00000000 00:00 0                                  [heap]
Rss:                  56 kB
7fef35085000-7fef35087000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
7fef35100000-7fef35120000 r--s 00000000 00:05 77   /memfd:shared (deleted)
Rss:                   4 kB
";

    #[test]
    fn only_clean_private_read_only_file_mappings_are_dropped() {
        assert_eq!(
            clean_mappings(SMAPS),
            vec![
                CleanMapping {
                    start: 0x0020_0000,
                    end: 0x0090_0000
                },
                CleanMapping {
                    start: 0x0090_0000,
                    end: 0x01f7_9000
                },
            ]
        );
    }

    #[test]
    fn dropping_keeps_code_and_constants_working() {
        static TABLE: [u64; 4] = [3, 1, 4, 1];
        let before: u64 = TABLE.iter().sum();
        release_clean_file_pages();
        assert_eq!(TABLE.iter().sum::<u64>(), before);
        assert_eq!(format!("{}", 42), "42");
    }
}
