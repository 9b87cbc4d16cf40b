//! The library's bytes, copied once into a sealed memory file, so that the
//! digest checked and the code mapped are the same bytes. Hashing the open
//! file and then loading `/proc/self/fd/N` of it was not enough: the loader
//! opens the path again and maps what the file holds by then, so a writer
//! could swap the bytes between the check and the map.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

/// A private, read-only copy of a plugin library.
#[derive(Debug)]
pub struct SealedLibrary {
    memory: File,
}

impl SealedLibrary {
    /// Reads `path` once, into a new memory file that nobody can write to
    /// any more (sealed against writes, growing and shrinking).
    pub fn copy_of(path: &Path) -> std::io::Result<Self> {
        let mut source = File::open(path)?;
        let mut memory = File::from(memfd_create(
            c"patrol-plugin",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )?);
        std::io::copy(&mut source, &mut memory)?;
        fcntl(
            &memory,
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_WRITE
                    | SealFlag::F_SEAL_GROW
                    | SealFlag::F_SEAL_SHRINK
                    | SealFlag::F_SEAL_SEAL,
            ),
        )?;
        memory.seek(SeekFrom::Start(0))?;
        Ok(Self { memory })
    }

    /// sha256 of the copy (what will be loaded), lowercase hex.
    pub fn sha256(&self) -> std::io::Result<String> {
        let mut reader = &self.memory;
        reader.seek(SeekFrom::Start(0))?;
        super::sha256_of(reader)
    }

    /// The path the loader opens: this process's descriptor of the copy.
    /// The memory file has no other name, and its seals hold for every
    /// descriptor of it, so what the loader maps is what was hashed.
    pub fn load_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", self.memory.as_raw_fd()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The regression this module exists for: a change to the file after
    /// the copy (a writer swapping the bytes) reaches neither the digest
    /// nor what the loader would open.
    #[test]
    fn later_writes_to_the_library_do_not_reach_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libplugin.so");
        std::fs::write(&path, b"the bytes that were pinned").unwrap();
        let sealed = SealedLibrary::copy_of(&path).unwrap();
        let pinned = crate::plugins::file_sha256(&path).unwrap();

        // In place (same inode) and by replacement (a new file at the path).
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all(b"EVIL").unwrap();
        drop(file);
        std::fs::write(dir.path().join("other"), b"other bytes altogether").unwrap();
        std::fs::rename(dir.path().join("other"), &path).unwrap();

        assert_eq!(sealed.sha256().unwrap(), pinned);
        let mut loaded = Vec::new();
        File::open(sealed.load_path())
            .unwrap()
            .read_to_end(&mut loaded)
            .unwrap();
        assert_eq!(loaded, b"the bytes that were pinned");
    }

    #[test]
    fn the_copy_cannot_be_written_through_any_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libplugin.so");
        std::fs::write(&path, b"pinned").unwrap();
        let sealed = SealedLibrary::copy_of(&path).unwrap();
        let reopened = std::fs::OpenOptions::new()
            .write(true)
            .open(sealed.load_path());
        let written = reopened.and_then(|mut file| file.write_all(b"EVIL"));
        assert!(written.is_err(), "a sealed copy took a write");
        assert_eq!(
            sealed.sha256().unwrap(),
            crate::plugins::file_sha256(&path).unwrap()
        );
    }
}
