//! `podway pause`: holds a sandbox's namespaces.

/// Entry point of `podway pause ARGS…`, called by the binary before any async runtime starts.
/// Returns the process exit code.
pub fn main(args: Vec<std::ffi::OsString>) -> i32 { let _ = args; todo!() }
