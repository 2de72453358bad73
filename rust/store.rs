//! Memory-mapped corpus files. The file is untrusted: magic, version, header length, dtype,
//! order and shape are checked, sizes use checked arithmetic, and the data length must match
//! the shape exactly before any row is viewed.
//!
//! Two layouts: a plain `.npy` (row-major `<f4`), and the *prefix-blocked* layout, where the
//! columns are split into blocks (e.g. 64 wide) stored one after another, each block row-major
//! over all rows, so a scan at a small prefix reads a contiguous range instead of a strided one:
//!
//! The prefix-blocked format (and its quantized tiers) is read and written by `blocked.rs`.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::blocked::{self, Tier, MAGIC as BLOCKED_MAGIC};
use crate::error::{Error, Result};
use crate::layout::{Matrix, Segment};

/// What the header says about the array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Byte offset of the data (of the first block).
    pub data_offset: usize,
    /// The column blocks, in column order; a `.npy` file is one block of width `cols`.
    pub blocks: Vec<Block>,
}

/// Columns `[col, col + width)` of every row, stored row-major (row stride `width`) from byte
/// `offset` of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// First column.
    pub col: usize,
    /// Number of columns.
    pub width: usize,
    /// Byte offset of row 0 in the file.
    pub offset: usize,
}

const MAGIC: &[u8] = b"\x93NUMPY";
/// Parses and validates a `.npy` header against the file's total length `file_len`. `bytes`
/// is the start of the file (at least the whole header, or the whole file if shorter).
pub fn parse_header(bytes: &[u8], file_len: u64, path: &str) -> Result<Header> {
    let bad = |reason: String| Error::BadHeader {
        path: path.to_string(),
        reason,
    };
    if file_len == 0 {
        return Err(bad("the file is empty".into()));
    }
    if bytes.len() < 6 || &bytes[..6] != MAGIC {
        if MAGIC.starts_with(bytes) {
            return Err(bad(format!(
                "truncated: the file has only {} bytes",
                bytes.len()
            )));
        }
        return Err(bad("bad magic: it does not start with \\x93NUMPY".into()));
    }
    if bytes.len() < 10 {
        return Err(bad(format!(
            "truncated: the file ends inside the header ({} bytes)",
            bytes.len()
        )));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, text_start) = match major {
        1 => (u64::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10u64),
        2 | 3 if bytes.len() >= 12 => (
            u64::from(u32::from_le_bytes([
                bytes[8], bytes[9], bytes[10], bytes[11],
            ])),
            12u64,
        ),
        2 | 3 => return Err(bad("truncated: the file ends inside the header".into())),
        _ => {
            return Err(bad(format!(
                "unsupported .npy format version {major}.{minor} (known: 1.0, 2.0, 3.0)"
            )))
        }
    };
    let data_offset = text_start + header_len;
    if data_offset > file_len || data_offset > bytes.len() as u64 {
        return Err(bad(format!(
            "truncated: the header claims {header_len} bytes but the file has {file_len} bytes in all"
        )));
    }
    let text = std::str::from_utf8(&bytes[text_start as usize..data_offset as usize])
        .map_err(|_| bad("the header is not valid text".into()))?;
    let dict = parse_dict(text)
        .map_err(|e| bad(format!("unreadable header {:?}: {e}", text.trim_end())))?;
    let descr = match dict.iter().find(|(k, _)| k == "descr") {
        Some((_, Value::Str(s))) => s.clone(),
        Some(_) => {
            return Err(Error::WrongDtype {
                path: path.into(),
                descr: "a structured dtype".into(),
            })
        }
        None => return Err(bad("the header has no 'descr'".into())),
    };
    let fortran = match dict.iter().find(|(k, _)| k == "fortran_order") {
        Some((_, Value::Bool(b))) => *b,
        _ => return Err(bad("the header has no boolean 'fortran_order'".into())),
    };
    let shape = match dict.iter().find(|(k, _)| k == "shape") {
        Some((_, Value::Tuple(t))) => t.clone(),
        _ => return Err(bad("the header has no 'shape' tuple".into())),
    };
    if descr != "<f4" {
        return Err(Error::WrongDtype {
            path: path.into(),
            descr,
        });
    }
    if shape.len() != 2 {
        return Err(bad(format!(
            "shape {shape:?} is {}-D; a corpus must be 2-D (rows, dims)",
            shape.len()
        )));
    }
    if fortran {
        return Err(bad(
            "Fortran-ordered (column-major) data cannot be scanned by rows in place; re-save it \
             with np.save(path, np.ascontiguousarray(a))"
                .into(),
        ));
    }
    let (rows, cols) = (shape[0], shape[1]);
    let data_len = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(4))
        .ok_or_else(|| bad(format!("shape ({rows}, {cols}) is too large")))?;
    let have = file_len - data_offset;
    if have < data_len {
        return Err(bad(format!(
            "truncated: shape ({rows}, {cols}) needs {data_len} bytes of data, the file has {have}"
        )));
    }
    if have > data_len {
        return Err(bad(format!(
            "the file has {} unexpected bytes after the ({rows}, {cols}) array",
            have - data_len
        )));
    }
    if !data_offset.is_multiple_of(4) {
        return Err(Error::Misaligned {
            path: path.into(),
            offset: data_offset as usize,
        });
    }
    let to_usize = |v: u64| {
        usize::try_from(v).map_err(|_| bad(format!("shape ({rows}, {cols}) is too large")))
    };
    let (rows, cols) = (to_usize(rows)?, to_usize(cols)?);
    let data_offset = data_offset as usize;
    Ok(Header {
        rows,
        cols,
        data_offset,
        blocks: vec![Block {
            col: 0,
            width: cols,
            offset: data_offset,
        }],
    })
}

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<u64>),
    Other,
}

/// A small parser for the Python dict literal numpy writes:
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_dict(text: &str) -> std::result::Result<Vec<(String, Value)>, String> {
    let mut p = Parser {
        s: text.trim().as_bytes(),
        i: 0,
    };
    p.expect(b'{')?;
    let mut out = Vec::new();
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        let value = p.value()?;
        out.push((key, value));
        p.ws();
        if !p.eat(b',') {
            p.ws();
            p.expect(b'}')?;
            break;
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err("text after the closing brace".into());
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at character {}", c as char, self.i))
        }
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let quote = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string at character {}", self.i)),
        };
        self.i += 1;
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != quote {
            self.i += 1;
        }
        if self.i == self.s.len() {
            return Err("unterminated string".into());
        }
        let v = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        self.i += 1;
        Ok(v)
    }
    fn value(&mut self) -> std::result::Result<Value, String> {
        match self.s.get(self.i) {
            Some(b'\'' | b'"') => Ok(Value::Str(self.string()?)),
            Some(b'(') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    if self.eat(b')') {
                        break;
                    }
                    items.push(self.int()?);
                    self.ws();
                    if !self.eat(b',') {
                        self.ws();
                        self.expect(b')')?;
                        break;
                    }
                }
                Ok(Value::Tuple(items))
            }
            Some(b'T') if self.s[self.i..].starts_with(b"True") => {
                self.i += 4;
                Ok(Value::Bool(true))
            }
            Some(b'F') if self.s[self.i..].starts_with(b"False") => {
                self.i += 5;
                Ok(Value::Bool(false))
            }
            Some(b'[') => {
                // A structured dtype's descr: skip the (possibly nested) list.
                let mut depth = 0usize;
                while let Some(&c) = self.s.get(self.i) {
                    self.i += 1;
                    match c {
                        b'[' | b'(' => depth += 1,
                        b']' | b')' => {
                            depth -= 1;
                            if depth == 0 {
                                return Ok(Value::Other);
                            }
                        }
                        _ => {}
                    }
                }
                Err("unterminated list".into())
            }
            _ => Err(format!("unexpected value at character {}", self.i)),
        }
    }
    fn int(&mut self) -> std::result::Result<u64, String> {
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        let v = std::str::from_utf8(&self.s[start..self.i])
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| format!("expected a non-negative integer at character {start}"))?;
        self.eat(b'L'); // Python 2 longs
        Ok(v)
    }
}

/// A `.npy` float32 matrix, or a prefix-blocked file, mapped read-only.
#[derive(Debug)]
pub struct NpyFile {
    path: PathBuf,
    header: Header,
    /// The prefix-blocked layout (`None` for a `.npy` file).
    blocked: Option<blocked::Layout>,
    map: Mmap,
    /// The open file and what `fstat` said when it was mapped: see [`NpyFile::check`].
    file: File,
    identity: Identity,
}

/// What must not change while a file is mapped: its size and modification time (through the
/// open descriptor) and, through the path, which file it is.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Identity {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    dev_ino: (u64, u64),
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Identity {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Identity {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            dev_ino: (meta.dev(), meta.ino()),
        }
    }
}

impl NpyFile {
    /// Opens and validates `path`, then maps it.
    pub fn open(path: impl AsRef<Path>) -> Result<NpyFile> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let io = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                path: shown.clone(),
            },
            _ => Error::Io {
                path: shown.clone(),
                message: e.to_string(),
            },
        };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.is_dir() {
            return Err(Error::Io {
                path: shown,
                message: "is a directory, not a .npy file".into(),
            });
        }
        let len = meta.len();
        if len == 0 {
            return Err(Error::BadHeader {
                path: shown,
                reason: "the file is empty".into(),
            });
        }
        // SAFETY: the map is read-only and private to this object. As with np.memmap, if
        // another process truncates or rewrites the file while it is mapped, reads may fault
        // or see new data; the header and length were valid when checked below.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        if map.len() as u64 != len {
            return Err(Error::Io {
                path: shown,
                message: "the file changed size while being opened".into(),
            });
        }
        let (header, blocked) = if map.starts_with(BLOCKED_MAGIC) {
            let layout = blocked::parse(&map, len, &shown)?;
            let blocks = match layout.blocks_of(Tier::Float32) {
                Some(offs) => layout
                    .columns()
                    .zip(offs)
                    .map(|((col, width), &offset)| Block { col, width, offset })
                    .collect(),
                None => Vec::new(),
            };
            let header = Header {
                rows: layout.rows,
                cols: layout.cols,
                data_offset: blocks.first().map_or(0, |b| b.offset),
                blocks,
            };
            (header, Some(layout))
        } else {
            (parse_header(&map, len, &shown)?, None)
        };
        Ok(NpyFile {
            path: path.to_path_buf(),
            header,
            blocked,
            map,
            identity: Identity::of(&meta),
            file,
        })
    }

    /// Checks that the file is still the one mapped, with its size and modification time:
    /// a scan of a file truncated since would fault (SIGBUS) instead of raising. Call it before
    /// each scan; a truncation *during* a scan is not caught.
    pub fn check(&self) -> Result<()> {
        let changed = |what: &str| Error::Io {
            path: self.path.display().to_string(),
            message: format!(
                "the file {what} since it was opened; open it again (a mapped file must not \
                 be truncated or rewritten in place)"
            ),
        };
        let now = self
            .file
            .metadata()
            .map_err(|e| changed(&format!("cannot be checked ({e})")))?;
        let now = Identity::of(&now);
        if now.len != self.identity.len {
            return Err(changed(&format!(
                "changed size from {} to {} bytes",
                self.identity.len, now.len
            )));
        }
        if now.modified != self.identity.modified {
            return Err(changed("was modified"));
        }
        #[cfg(unix)]
        {
            let path_now = std::fs::metadata(&self.path).map(|m| Identity::of(&m).dev_ino);
            if path_now.ok() != Some(self.identity.dev_ino) {
                return Err(changed("was replaced or removed"));
            }
        }
        Ok(())
    }

    /// The tiers the file holds (`[Float32]` for a `.npy` file), finest first.
    pub fn tiers(&self) -> Vec<Tier> {
        self.blocked
            .as_ref()
            .map_or_else(|| vec![Tier::Float32], |l| l.tiers.clone())
    }

    /// The prefix-blocked layout, if the file is one.
    pub fn blocked(&self) -> Option<&blocked::Layout> {
        self.blocked.as_ref()
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.header.rows, self.header.cols)
    }

    /// The float32 rows as a matrix, zero-copy; an error if the file holds no float32 tier.
    pub fn matrix(&self) -> Result<Matrix<'_>> {
        if self.header.blocks.is_empty() {
            return Err(crate::quant::missing_tier(Tier::Float32, &self.tiers()));
        }
        let (rows, cols) = self.shape();
        let segments = self
            .header
            .blocks
            .iter()
            .map(|b| {
                let base = self.map[b.offset..].as_ptr().cast::<f32>();
                Segment::new(b.col, b.width, base, b.width as isize)
            })
            .collect();
        // SAFETY: the header parsers checked that every block's offset is a multiple of 4 (64
        // for blocked files; the .npy offset separately) and the mmap base is page aligned, so
        // each base is 4-byte aligned; that rows * width * 4 bytes of each block lie inside the
        // file (exact total length), so every row r < rows has `width` readable f32s at
        // base + r * width; the blocks cover [0, cols) in order; the map lives as long as the
        // borrow of self, and it is never written.
        Ok(unsafe { Matrix::from_segments(rows, cols, segments) })
    }

    /// `"row-major"` for `.npy` files, `"prefix-blocked"` for the blocked layout.
    pub fn layout(&self) -> &'static str {
        if self.map.starts_with(BLOCKED_MAGIC) {
            "prefix-blocked"
        } else {
            "row-major"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn npy(major: u8, dict: &str, data_len: usize) -> Vec<u8> {
        let mut text = dict.to_string();
        let pre = if major == 1 { 10 } else { 12 };
        while !(pre + text.len() + 1).is_multiple_of(64) {
            text.push(' ');
        }
        text.push('\n');
        let mut v = MAGIC.to_vec();
        v.extend([major, 0]);
        if major == 1 {
            v.extend((text.len() as u16).to_le_bytes());
        } else {
            v.extend((text.len() as u32).to_le_bytes());
        }
        v.extend(text.as_bytes());
        v.extend(std::iter::repeat_n(0u8, data_len));
        v
    }

    const GOOD: &str = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";

    fn parse(b: &[u8]) -> Result<Header> {
        parse_header(b, b.len() as u64, "x.npy")
    }

    #[test]
    fn good_headers_all_versions() {
        for major in [1, 2, 3] {
            let h = parse(&npy(major, GOOD, 48)).unwrap();
            assert_eq!((h.rows, h.cols, h.data_offset % 64), (3, 4, 0));
        }
        let h = parse(&npy(
            1,
            "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(0,7)}",
            0,
        ))
        .unwrap();
        assert_eq!((h.rows, h.cols), (0, 7));
        let h = parse(&npy(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 2L), }",
            16,
        ))
        .unwrap();
        assert_eq!((h.rows, h.cols), (2, 2));
    }

    fn err(b: &[u8]) -> String {
        parse(b).unwrap_err().to_string()
    }

    #[test]
    fn corrupt_headers() {
        assert!(err(b"").contains("empty"));
        assert!(err(b"NOTNUMPY0000000").contains("magic"));
        assert!(err(b"\x93NUMPY").contains("truncated"));
        assert!(err(b"\x93NUMPY\x01\x00").contains("truncated"));
        let mut v = npy(1, GOOD, 48);
        v[6] = 9;
        assert!(err(&v).contains("version 9"));
        assert!(err(&npy(1, GOOD, 47)).contains("truncated"));
        assert!(err(&npy(1, GOOD, 49)).contains("unexpected bytes"));
        assert!(err(&npy(1, GOOD, 0)[..40]).contains("truncated"));
        assert!(err(&npy(
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }",
            96
        ))
        .contains("astype"));
        assert!(err(&npy(
            1,
            "{'descr': '>f4', 'fortran_order': False, 'shape': (3, 4), }",
            48
        ))
        .contains(">f4"));
        assert!(err(&npy(
            1,
            "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 4), }",
            48
        ))
        .contains("Fortran"));
        assert!(err(&npy(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (12,), }",
            48
        ))
        .contains("1-D"));
        assert!(err(&npy(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 3), }",
            48
        ))
        .contains("3-D"));
        assert!(err(&npy(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }",
            48
        ))
        .contains("too large"));
        assert!(err(&npy(1, "{'descr': '<f4', 'shape': (3, 4), }", 48)).contains("fortran_order"));
        assert!(err(&npy(
            1,
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3, 4), }",
            48
        ))
        .contains("structured"));
        assert!(err(&npy(1, "garbage", 48)).contains("unreadable header"));
        // Header length pointing past the end of the file.
        let mut v = npy(1, GOOD, 0);
        v[8] = 0xff;
        v[9] = 0xff;
        assert!(err(&v).contains("truncated"));
    }

    /// A prefix-blocked file of `x` (`rows x cols`) with blocks of `block` columns.
    fn blocked(x: &[f32], rows: usize, cols: usize, block: usize) -> Vec<u8> {
        let widths: Vec<usize> = (0..cols)
            .step_by(block)
            .map(|c| block.min(cols - c))
            .collect();
        let mut v = BLOCKED_MAGIC.to_vec();
        v.extend(1u32.to_le_bytes());
        v.extend((widths.len() as u32).to_le_bytes());
        v.extend((rows as u64).to_le_bytes());
        v.extend((cols as u64).to_le_bytes());
        for w in &widths {
            v.extend((*w as u64).to_le_bytes());
        }
        let mut col = 0;
        for w in widths {
            v.resize(v.len().div_ceil(64) * 64, 0);
            for r in 0..rows {
                for c in col..col + w {
                    v.extend(x[r * cols + c].to_le_bytes());
                }
            }
            col += w;
        }
        v
    }

    #[test]
    fn blocked_layout_scans_bitwise_like_row_major() {
        use crate::kernels::{available, Kernels};
        use crate::search::{topk_with, Queries};
        let (rows, cols) = (700, 100);
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 1013) as f32 / 506.5) - 1.0)
            .collect();
        let bytes = blocked(&x, rows, cols, 16);
        let h = blocked::parse(&bytes, bytes.len() as u64, "b").unwrap();
        assert_eq!((h.rows, h.cols, h.widths.len()), (rows, cols, 7));
        let f32_offs = h.blocks_of(Tier::Float32).unwrap().to_vec();
        let blocks: Vec<Block> = h
            .columns()
            .zip(f32_offs)
            .map(|((col, width), offset)| Block { col, width, offset })
            .collect();
        // A file's bytes are only 1-byte aligned in a Vec; copy the blocks into f32 buffers.
        let bufs: Vec<Vec<f32>> = blocks
            .iter()
            .map(|b| {
                bytes[b.offset..b.offset + rows * b.width * 4]
                    .chunks(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect()
            })
            .collect();
        let segments = blocks
            .iter()
            .zip(&bufs)
            .map(|(b, buf)| Segment::new(b.col, b.width, buf.as_ptr(), b.width as isize))
            .collect();
        // SAFETY: each buffer holds rows * width floats, alive for the test.
        let mb = unsafe { Matrix::from_segments(rows, cols, segments) };
        let mr = Matrix::from_slice(&x, rows, cols).unwrap();
        let q: Vec<f32> = (0..3 * cols)
            .map(|i| ((i * 31 % 97) as f32) - 48.0)
            .collect();
        for backend in available() {
            let k = Kernels::new(backend).unwrap();
            for dim in [1, 15, 16, 17, 50, 64, 100] {
                for nq in [1, 3] {
                    let qs = Queries::new(&q[..nq * cols], cols).unwrap();
                    let a = topk_with(k, qs, &mb, dim, 20).unwrap();
                    let b = topk_with(k, qs, &mr, dim, 20).unwrap();
                    assert_eq!(a, b, "{backend} dim {dim} nq {nq}");
                }
            }
        }
    }

    #[test]
    fn corrupt_blocked_headers() {
        let x = vec![0.5f32; 6 * 40];
        let good = blocked(&x, 6, 40, 16);
        let err = |b: &[u8]| {
            blocked::parse(b, b.len() as u64, "b")
                .unwrap_err()
                .to_string()
        };
        assert!(blocked::parse(&good, good.len() as u64, "b").is_ok());
        assert!(err(&good[..20]).contains("truncated"));
        assert!(err(&good[..good.len() - 4]).contains("truncated"));
        let mut v = good.clone();
        v.push(0);
        assert!(err(&v).contains("unexpected bytes"));
        let mut v = good.clone();
        v[8] = 3;
        assert!(err(&v).contains("version 3"));
        let mut v = good.clone();
        v[32] = 15; // first width 16 -> 15: widths no longer add up
        assert!(err(&v).contains("add up"));
        let mut v = good.clone();
        v[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(err(&v).contains("too large"));
    }

    proptest! {
        #[test]
        fn fuzz_blocked_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut v = BLOCKED_MAGIC.to_vec();
            v.extend(tail);
            let _ = blocked::parse(&v, v.len() as u64, "b");
        }

        // The parser never panics, whatever the bytes.
        #[test]
        fn fuzz_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..200), major in 0u8..5) {
            let mut v = MAGIC.to_vec();
            v.extend([major, 0]);
            v.extend(tail);
            let _ = parse(&v);
        }

        #[test]
        fn fuzz_mutated_good_header(pos in 0usize..112, byte in any::<u8>()) {
            let mut v = npy(1, GOOD, 48);
            v[pos] = byte;
            let _ = parse(&v);
        }
    }
}
