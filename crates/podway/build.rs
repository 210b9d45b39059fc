//! Links the `podway` binary as a position-dependent executable (`-no-pie`).
//!
//! Every pod runs two long-lived copies of this binary (`podway pause`, `podway shim`). As a
//! position-independent executable, each copy's dynamic loader rewrites about 850 KiB of
//! relocated read-only data (vtables, string tables) at start: private memory in every process,
//! and about 0.4 ms of each start. Linked at a fixed address, that data stays shared with the
//! page cache. The trade is address-space randomisation of the executable's own code (the
//! heap, stacks and libraries stay randomised); Debian ships runc, containerd and its shims the
//! same way. Libraries, build scripts and test binaries are not affected.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
