//! Keeping the per-pod helpers (`podway shim`, `podway pause`) small in memory.
//!
//! Both are the podway binary, so starting one touches code and read-only data the steady
//! state never uses again: the Rust runtime's start, argument parsing, the setup of the
//! namespaces or sockets. Those pages are shared with the page cache, but as long as they stay
//! mapped they count in the helper's RSS and the kernel keeps them as in-use memory. Once set
//! up, a helper calls [`release_clean_file_pages`]: every page of a read-only file mapping that
//! is still the file's own (the binary's text, constants and relocation-free RELRO, the C
//! library's) is dropped from its page tables with `MADV_DONTNEED`. The mapping stays; a page
//! touched again is mapped back from the file, unchanged, so only what the loop really uses
//! comes back.
//!
//! The heap's free pages are handed back as well (`malloc_trim`).
//!
//! Writable mappings, anonymous memory and the private copies of pages a read-only mapping
//! holds (a GOT or RELRO page the dynamic loader relocated) are left alone: dropping those would
//! lose their contents. `/proc/self/pagemap` tells the two kinds of page apart.
use std::io::{Read, Seek, SeekFrom};

/// `/proc/PID/pagemap`: the page is present.
const PAGE_PRESENT: u64 = 1 << 63;
/// `/proc/PID/pagemap`: the page is a file page (or shared anonymous), not a private copy.
const PAGE_FILE: u64 = 1 << 61;

/// A read-only private file mapping of `/proc/self/maps`: the candidates.
#[derive(Debug, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
}

/// The most page runs one call drops (the rest stay mapped): they are collected on the stack
/// first, so that nothing is allocated or freed between the first `madvise` and the return.
const MAX_RUNS: usize = 512;

/// Drops this process's clean read-only file pages from its page tables (see the module doc).
/// Best effort: a failure leaves the pages mapped, which costs memory, not correctness.
pub(crate) fn release_clean_file_pages() {
    // Every page the caller touches after its own pages are dropped comes back with its
    // neighbours (the kernel maps up to 64 KiB around a fault): reading the maps, allocating
    // and freeing all happen first, the `madvise` calls last.
    let mut runs = [(0usize, 0usize); MAX_RUNS];
    let found = clean_file_page_runs(&mut runs);
    // Free heap pages go back to the kernel too (setup's buffers and strings).
    // SAFETY: malloc_trim only releases memory malloc holds free.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
    for &(start, len) in &runs[..found] {
        // SAFETY: the range lies in a read-only private file mapping of this process and
        // holds only pages that are the file's own (no private copy), so MADV_DONTNEED only
        // unmaps pages the next access maps again from the same file contents.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
        }
    }
}

/// Fills `out` with the (address, length) of runs of present file pages in this process's
/// read-only private file mappings; returns how many it filled.
fn clean_file_page_runs(out: &mut [(usize, usize)]) -> usize {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let Ok(mut pagemap) = std::fs::File::open("/proc/self/pagemap") else {
        return 0;
    };
    let page = page_size();
    let mut found = 0;
    for m in read_only_file_mappings(&maps) {
        let Some(entries) = pagemap_entries(&mut pagemap, &m, page) else {
            continue;
        };
        for (first, count) in file_page_runs(&entries) {
            let Some(slot) = out.get_mut(found) else {
                return found;
            };
            *slot = (m.start + first * page, count * page);
            found += 1;
        }
    }
    found
}

fn page_size() -> usize {
    // SAFETY: sysconf with a constant name.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// The pagemap entry of every page of `m`.
fn pagemap_entries(pagemap: &mut std::fs::File, m: &Mapping, page: usize) -> Option<Vec<u64>> {
    let pages = (m.end - m.start) / page;
    let mut bytes = vec![0u8; pages * 8];
    pagemap
        .seek(SeekFrom::Start(u64::try_from(m.start / page * 8).ok()?))
        .ok()?;
    pagemap.read_exact(&mut bytes).ok()?;
    Some(
        bytes
            .chunks_exact(8)
            .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or_default()))
            .collect(),
    )
}

/// Runs `(first page, count)` of present file pages among pagemap `entries`.
fn file_page_runs(entries: &[u64]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, &e) in entries.iter().enumerate() {
        if e & PAGE_PRESENT == 0 || e & PAGE_FILE == 0 {
            continue;
        }
        match runs.last_mut() {
            Some((first, count)) if *first + *count == i => *count += 1,
            _ => runs.push((i, 1)),
        }
    }
    runs
}

/// The read-only private file mappings of a `/proc/PID/maps` text
/// (`start-end perms offset dev inode path`).
fn read_only_file_mappings(maps: &str) -> Vec<Mapping> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let perms = fields.next()?;
            let path = fields.nth(3)?;
            let candidate = path.starts_with('/') && !perms.contains('w') && perms.ends_with('p');
            candidate.then_some(Mapping {
                start: usize::from_str_radix(start, 16).ok()?,
                end: usize::from_str_radix(end, 16).ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
00200000-00900000 r--p 00000000 fe:00 10158203   /usr/bin/podway
00900000-01f79000 r-xp 006ff000 fe:00 10158203   /usr/bin/podway
01f85000-01f91000 rw-p 01d82000 fe:00 10158203   /usr/bin/podway
2f301000-2f324000 rw-p 00000000 00:00 0                                  [heap]
7fef35085000-7fef35087000 r-xp 00000000 00:00 0                          [vdso]
7fef35100000-7fef35120000 r--s 00000000 00:05 77   /memfd:shared (deleted)
7fef35200000-7fef35210000 ---p 00000000 00:00 0
";

    #[test]
    fn candidates_are_read_only_private_file_mappings() {
        assert_eq!(
            read_only_file_mappings(MAPS),
            vec![
                Mapping {
                    start: 0x0020_0000,
                    end: 0x0090_0000
                },
                Mapping {
                    start: 0x0090_0000,
                    end: 0x01f7_9000
                },
            ]
        );
    }

    #[test]
    fn only_present_file_pages_are_dropped() {
        let file = PAGE_PRESENT | PAGE_FILE;
        let private_copy = PAGE_PRESENT;
        let absent = 0;
        let entries = [file, file, private_copy, file, absent, file, file, file];
        assert_eq!(file_page_runs(&entries), vec![(0, 2), (3, 1), (5, 3)]);
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
