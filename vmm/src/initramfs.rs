//! A writer for the "newc" cpio format Linux unpacks into its initial root: the host builds a
//! small archive (the spawn spec and the files the program needs) and the builder appends it to
//! the base initramfs. Linux unpacks concatenated archives when each starts 4-byte aligned.

/// Why an entry could not be added.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("archive path {0:?} is empty, has a NUL, a `..` or an empty component")]
    BadPath(String),
    #[error("{path:?} of {size} bytes is over the format's 4 GiB")]
    TooBig { path: String, size: usize },
}

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;

/// A newc archive being written in memory. Entries are owned by root, dated 1970.
#[derive(Default)]
pub struct CpioWriter {
    out: Vec<u8>,
    next_inode: u32,
}

impl CpioWriter {
    pub fn new() -> CpioWriter {
        CpioWriter::default()
    }

    /// A directory at `path` (relative to the root; a leading `/` is dropped) with these
    /// permission bits. Parents are not implied: add them first.
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<&mut Self, CpioError> {
        let path = clean(path)?;
        self.entry(path, S_IFDIR | (mode & 0o7777), 2, &[]);
        Ok(self)
    }

    /// A regular file at `path` with these permission bits and contents.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<&mut Self, CpioError> {
        let path = clean(path)?;
        if u32::try_from(data.len()).is_err() {
            return Err(CpioError::TooBig { path: path.to_owned(), size: data.len() });
        }
        self.entry(path, S_IFREG | (mode & 0o7777), 1, data);
        Ok(self)
    }

    /// The archive with its trailer, a multiple of 4 bytes long.
    pub fn finish(mut self) -> Vec<u8> {
        self.next_inode = 0;
        self.entry(TRAILER, 0, 1, &[]);
        self.out
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, data: &[u8]) {
        self.next_inode += 1;
        // Lengths were checked to fit in 32 bits; the name is short (a path).
        let fields = [self.next_inode, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, 0, 0, path.len() as u32 + 1, 0];
        self.out.extend_from_slice(MAGIC.as_bytes());
        for field in fields {
            self.out.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.out.extend_from_slice(path.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        self.out.resize(self.out.len().next_multiple_of(4), 0);
    }
}

fn clean(path: &str) -> Result<&str, CpioError> {
    let relative = path.trim_start_matches('/');
    let bad = relative.is_empty()
        || relative == TRAILER
        || relative.contains('\0')
        || relative.split('/').any(|part| part.is_empty() || part == "..");
    if bad {
        return Err(CpioError::BadPath(path.to_owned()));
    }
    Ok(relative)
}

/// Where an archive appended to a base archive of `base_len` bytes starts: the next 4-byte boundary
/// (the bytes between are zero).
pub fn extra_offset(base_len: usize) -> usize {
    base_len.next_multiple_of(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_matches_the_newc_layout() {
        let mut cpio = CpioWriter::new();
        cpio.dir("/clove", 0o755).unwrap().file("clove/spawn.json", 0o644, b"{}").unwrap();
        let bytes = cpio.finish();
        let header = |at: usize| std::str::from_utf8(&bytes[at..at + 110]).unwrap().to_owned();
        let first = header(0);
        assert!(first.starts_with("070701"));
        assert_eq!(&first[14..22], "000041ed", "a directory, rwxr-xr-x");
        assert_eq!(&first[94..102], "00000006", "name size counts the NUL");
        assert_eq!(&bytes[110..116], b"clove\0");
        // 110 + 6 = 116, already aligned; no data.
        let second = header(116);
        assert_eq!(&second[14..22], "000081a4");
        assert_eq!(&second[54..62], "00000002");
        // 116 + 110 + 17 ("clove/spawn.json\0") = 243 -> 244, then "{}" -> 246 -> 248.
        assert_eq!(&bytes[244..246], b"{}");
        assert_eq!(&bytes[248 + 110..248 + 121], b"TRAILER!!!\0");
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for path in ["", "/", "a/../b", "a//b", "..", "x\0y", "TRAILER!!!"] {
            assert!(CpioWriter::new().file(path, 0o644, b"").is_err(), "{path:?}");
        }
    }

    #[test]
    fn appended_archive_starts_aligned() {
        assert_eq!(extra_offset(5), 8);
        assert_eq!(extra_offset(8), 8);
        assert_eq!(extra_offset(0), 0);
    }
}
