//! Layer snapshots: each layer unpacked once into `DATA/snapshots/<hex>/`, whiteouts turned into
//! overlayfs form (`.wh.NAME` ⇒ a 0:0 character device, `.wh..wh..opq` ⇒ `trusted.overlay.opaque`),
//! so a container's rootfs is an overlay mount of the snapshots.
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use crate::util::{io_ctx, remove_dir_all};
use crate::{Error, Result};

/// Makes sure the layer blob `blob` (digest hex `hex`) is unpacked under `snapshots`; returns its
/// folder. `layer` names it in errors (`layer sha256:… of image "…"`); a failed unpack leaves
/// nothing behind.
pub(crate) fn ensure_unpacked(
    snapshots: &Path,
    hex: &str,
    blob: &Path,
    layer: &str,
) -> Result<PathBuf> {
    let dest = snapshots.join(hex);
    if dest.is_dir() {
        return Ok(dest);
    }
    crate::util::create_dir_all(snapshots)?;
    let tmp = snapshots.join(format!(".tmp-{hex}-{}", rand::random::<u64>()));
    let result = unpack_layer(blob, &tmp, layer).and_then(|()| {
        match std::fs::rename(&tmp, &dest) {
            Ok(()) => Ok(()),
            // Another process unpacked the same layer first.
            Err(_) if dest.is_dir() => remove_dir_all(&tmp),
            Err(e) => Err(io_ctx(format!("renaming snapshot {}", dest.display()))(e)),
        }
    });
    if result.is_err() {
        let _ = remove_dir_all(&tmp);
    }
    result.map(|()| dest)
}

/// Unpacks a layer (tar, plain or gzip- or zstd-compressed, told by its magic) into `dest`.
fn unpack_layer(blob: &Path, dest: &Path, layer: &str) -> Result<()> {
    let context = || format!("unpacking {layer}");
    let file = std::fs::File::open(blob).map_err(io_ctx(context()))?;
    let mut reader = BufReader::new(file);
    let head = reader.fill_buf().map_err(io_ctx(context()))?;
    let input: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(reader))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(io_ctx(context()))?)
    } else {
        Box::new(reader)
    };
    std::fs::create_dir(dest).map_err(io_ctx(context()))?;
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let entries = archive.entries().map_err(io_ctx(context()))?;
    for entry in entries {
        let mut entry = entry.map_err(io_ctx(context()))?;
        let path = entry.path().map_err(io_ctx(context()))?.into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            entry
                .unpack_in(dest)
                .map_err(|e| with_cause(e, context()))?;
            continue;
        };
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let parent = safe_join(dest, path.parent().unwrap_or_else(|| Path::new("")))
                .ok_or_else(|| {
                    Error::InvalidArgument(format!("{}: bad path {path:?}", context()))
                })?;
            std::fs::create_dir_all(&parent).map_err(io_ctx(context()))?;
            if hidden == ".wh..opq" {
                set_opaque(&parent).map_err(io_ctx(format!("{}: opaque {path:?}", context())))?;
            } else {
                whiteout(&parent.join(hidden))
                    .map_err(io_ctx(format!("{}: whiteout {path:?}", context())))?;
            }
            continue;
        }
        entry
            .unpack_in(dest)
            .map_err(|e| with_cause(e, format!("{}: {path:?}", context())))?;
    }
    Ok(())
}

/// [`Error::Io`] with the innermost cause of an error the tar crate wrapped ("failed to unpack
/// `…/.tmp-…/big`: No space left on device" ⇒ "No space left on device"): the temporary path
/// means nothing to the reader, the entry is in `context`.
fn with_cause(e: std::io::Error, context: String) -> Error {
    let mut cause = e.to_string();
    let mut next = std::error::Error::source(&e);
    while let Some(c) = next {
        cause = c.to_string();
        next = c.source();
    }
    Error::Io {
        context,
        source: std::io::Error::new(e.kind(), cause),
    }
}

/// `base/rel` if `rel` stays inside `base`.
fn safe_join(base: &Path, rel: &Path) -> Option<PathBuf> {
    let mut out = base.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// An overlayfs whiteout: a character device 0:0.
fn whiteout(path: &Path) -> std::io::Result<()> {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    let _ = std::fs::remove_file(path);
    mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(std::io::Error::from)
}

/// Marks `dir` opaque for overlayfs.
fn set_opaque(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let name = c"trusted.overlay.opaque";
    // SAFETY: both strings are NUL-terminated and outlive the call; the value is 1 byte.
    let rc = unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn layer(entries: &[(&str, &[u8], u32, u32)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data, mode, uid) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(*mode);
            header.set_uid(u64::from(*uid));
            header.set_gid(u64::from(*uid));
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, path, *data)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        builder.into_inner().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn unpacks_with_modes_owners_and_whiteouts() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let blob = tmp.path().join("layer.tar");
        let data = layer(&[
            ("etc/motd", b"hi", 0o640, 1234),
            ("etc/.wh.gone", b"", 0o600, 0),
            ("var/.wh..wh..opq", b"", 0o600, 0),
        ]);
        std::fs::write(&blob, data).unwrap_or_else(|e| panic!("{e}"));
        let snaps = tmp.path().join("snapshots");
        let dir =
            ensure_unpacked(&snaps, "abc", &blob, "layer abc").unwrap_or_else(|e| panic!("{e}"));
        let motd = std::fs::metadata(dir.join("etc/motd")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(motd.mode() & 0o7777, 0o640);
        assert_eq!(motd.uid(), 1234);
        let gone =
            std::fs::symlink_metadata(dir.join("etc/gone")).unwrap_or_else(|e| panic!("{e}"));
        assert!(gone.file_type().is_char_device());
        assert_eq!(gone.rdev(), 0);
        assert!(!dir.join("var/.wh..wh..opq").exists());
        // A second call finds the snapshot.
        assert_eq!(
            ensure_unpacked(&snaps, "abc", &blob, "layer abc").ok(),
            Some(dir)
        );
    }
}
