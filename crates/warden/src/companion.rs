//! Finding a companion program (svscan's `supervise`, supervise's `logger`): only in the
//! directory of the program that looks for it, as the boot image and `cargo xtask install`
//! keep them (`P/lib/warden/`), and only if it is warden's. Never on PATH: there,
//! `supervise` is daemontools' and `logger` util-linux's, and running either in warden's
//! place loses a service or its log.
//!
//! That a file is warden's is told by a mark each companion carries in an ELF section of its
//! own ([`companion_mark!`]): three reads of the file's headers, no spawn.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The section of the mark, and the mark.
pub const SECTION: &[u8] = b".warden.companion";
pub const MARK: [u8; 16] = *b"warden companion";

/// Puts the companion mark into the program that invokes it (in its main file: a static of a
/// library would only be linked if something referred to it).
#[macro_export]
macro_rules! companion_mark {
    () => {
        // A named section is "unsafe" only in that the linker places it: it is data that
        // nothing reads at run time, so where it lands does not matter.
        #[allow(unsafe_code)]
        #[used]
        #[link_section = ".warden.companion"]
        static WARDEN_COMPANION_MARK: [u8; 16] = $crate::companion::MARK;
    };
}

/// The directory this program runs from: its executable's (`/proc/self/exe`), else, with
/// `/proc` gone, that of `argv[0]` when it is a path (svscan starts supervise by its full
/// path); `None` when neither is known.
pub fn own_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        return Some(dir);
    }
    let argv0 = PathBuf::from(crate::entry::args_os().into_iter().next()?);
    if !argv0.as_os_str().as_encoded_bytes().contains(&b'/') {
        return None;
    }
    let argv0 = match argv0.is_absolute() {
        true => argv0,
        false => std::env::current_dir().ok()?.join(argv0),
    };
    argv0.parent().map(Path::to_path_buf)
}

/// Warden's `name` next to this program, or why there is none: the error says where it was
/// looked for and what was wrong there.
pub fn find(name: &str) -> Result<PathBuf, String> {
    let Some(dir) = own_dir() else {
        return Err(format!(
            "unable to find warden's {name}: this program's own directory is unknown \
             (no /proc/self/exe and argv[0] is not a path); PATH is not searched"
        ));
    };
    let path = dir.join(name);
    match is_marked(&path) {
        Ok(true) => Ok(path),
        Ok(false) => Err(format!(
            "unable to use {}: it is not warden's {name} (it has no warden companion mark)",
            path.display()
        )),
        Err(e) => Err(format!(
            "unable to find warden's {name} at {}: {}; PATH is not searched",
            path.display(),
            io_cause(&e)
        )),
    }
}

fn io_cause(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text.get(..at).unwrap_or(&text).to_owned(),
        None => text,
    }
}

/// Whether `path` is an ELF file with the companion mark in its section.
pub fn is_marked(path: &Path) -> io::Result<bool> {
    let file = File::open(path)?;
    if !file.metadata()?.is_file() {
        return Ok(false);
    }
    Ok(section(&file, SECTION)?.is_some_and(|bytes| bytes == MARK))
}

/// Tables larger than this are not ELF files warden wrote.
const MAX_TABLE: u64 = 1 << 20;

/// The contents of the section called `wanted`, if the file is ELF and has it.
fn section(file: &File, wanted: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 64];
    if read_at(file, &mut header, 0)? < 52 || header.get(..4) != Some(b"\x7fELF") {
        return Ok(None);
    }
    let wide = match header.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Ok(None),
    };
    let little = match header.get(5) {
        Some(1) => true,
        Some(2) => false,
        _ => return Ok(None),
    };
    let field = |bytes: &[u8], at: usize, len: usize| -> Option<u64> {
        let raw = bytes.get(at..at.checked_add(len)?)?;
        let mut value = 0u64;
        for i in 0..len {
            let byte = if little {
                raw.get(len - 1 - i)?
            } else {
                raw.get(i)?
            };
            value = (value << 8) | u64::from(*byte);
        }
        Some(value)
    };
    let layout = if wide {
        (
            field(&header, 0x28, 8),
            field(&header, 0x3A, 2),
            field(&header, 0x3C, 2),
            field(&header, 0x3E, 2),
        )
    } else {
        (
            field(&header, 0x20, 4),
            field(&header, 0x2E, 2),
            field(&header, 0x30, 2),
            field(&header, 0x32, 2),
        )
    };
    let (Some(table_at), Some(entry_len), Some(count), Some(names_index)) = layout else {
        return Ok(None);
    };
    // (name offset, file offset, size) of section `i`.
    let (name_at, offset_at, size_at, size_len) = if wide {
        (0, 0x18, 0x20, 8)
    } else {
        (0, 0x10, 0x14, 4)
    };
    let Some(table_len) = entry_len.checked_mul(count).filter(|&n| n <= MAX_TABLE) else {
        return Ok(None);
    };
    let mut table = vec![0u8; usize::try_from(table_len).unwrap_or(0)];
    if read_at(file, &mut table, table_at)? < table.len() {
        return Ok(None);
    }
    let entry = |i: u64| -> Option<(u64, u64, u64)> {
        let at = usize::try_from(i.checked_mul(entry_len)?).ok()?;
        let fields = table.get(at..)?;
        Some((
            field(fields, name_at, 4)?,
            field(fields, offset_at, size_len)?,
            field(fields, size_at, size_len)?,
        ))
    };
    let read_section = |offset: u64, size: u64| -> io::Result<Option<Vec<u8>>> {
        if size > MAX_TABLE {
            return Ok(None);
        }
        let mut bytes = vec![0u8; usize::try_from(size).unwrap_or(0)];
        if read_at(file, &mut bytes, offset)? < bytes.len() {
            return Ok(None);
        }
        Ok(Some(bytes))
    };
    let Some((_, names_offset, names_size)) = entry(names_index) else {
        return Ok(None);
    };
    let Some(names) = read_section(names_offset, names_size)? else {
        return Ok(None);
    };
    for i in 0..count {
        let Some((name, offset, size)) = entry(i) else {
            return Ok(None);
        };
        let name = usize::try_from(name)
            .ok()
            .and_then(|at| names.get(at..))
            .and_then(|rest| rest.split(|&b| b == 0).next());
        if name == Some(wanted) {
            return read_section(offset, size);
        }
    }
    Ok(None)
}

/// Reads as much of `buf` as the file has from `offset`; the count read.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while let Some(rest) = buf.get_mut(done..).filter(|rest| !rest.is_empty()) {
        let at = offset.saturating_add(done as u64);
        match file.read_at(rest, at) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::companion_mark!();

    #[test]
    fn this_test_program_is_marked_and_sh_is_not() {
        let exe = std::env::current_exe().unwrap();
        assert!(is_marked(&exe).unwrap(), "{}", exe.display());
        assert!(!is_marked(Path::new("/bin/sh")).unwrap());
        assert!(is_marked(Path::new("/nonexistent")).is_err());
    }

    #[test]
    fn junk_files_are_not_marked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        for content in [&b""[..], b"\x7fELF", b"\x7fELF\x02\x01\x01", &[0xff; 200]] {
            std::fs::write(&p, content).unwrap();
            assert!(!is_marked(&p).unwrap());
        }
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        // A table far beyond the file's end and a huge count.
        elf[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        elf[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3C..0x3E].copy_from_slice(&u16::MAX.to_le_bytes());
        std::fs::write(&p, &elf).unwrap();
        assert!(!is_marked(&p).unwrap());
    }
}
