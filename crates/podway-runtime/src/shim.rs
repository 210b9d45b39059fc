//! `podway shim`: the per-pod monitor.

/// Entry point of `podway shim ARGS…`, called by the binary before any async runtime starts.
/// Returns the process exit code.
pub fn main(args: Vec<std::ffi::OsString>) -> i32 { let _ = args; todo!() }
