//! The prefix-blocked corpus file: its one reader ([`parse`]) and its one writer ([`Writer`]).
//!
//! The columns are split into blocks (e.g. 64 wide); each *tier* (a precision) stores block 0
//! of every row, then block 1, ..., so a scan at a prefix width reads a contiguous range of
//! each block it needs and nothing else. A file holds any non-empty set of tiers:
//!
//! - `float32`: `rows x width` little-endian `f32` per block, then, per block `b`, `rows` `f32`
//!   norms `|x[:end_b]|` (the prefix up to the block's end, float64 rounded to float32);
//! - `int8`: `rows x width` `i8` codes per block, equal to sentence-transformers'
//!   `quantize_embeddings(x, "int8", ranges)` (`floor((x - min) / step)` clipped to `0..=255`,
//!   minus 128, in float32, `step = (max - min) / 255`, 0 replaced by 1), then per block the
//!   norms of the de-quantized prefixes ([`Int8Params::value`]);
//! - `binary`: `rows x ceil(width / 8)` bytes per block, `np.packbits(x > 0)` of the block's
//!   columns (column 0 in the most significant bit); every block but the last is a multiple of
//!   8 wide, so a row's blocks put together are `quantize_embeddings(x, "ubinary")`.
//!
//! ```text
//! b"MATRYOFB" | version u32 = 2 | nblocks u32 | rows u64 | cols u64 | tiers u32 | 0 u32
//!   | width u64 x nblocks | (int8 tier only) min f32 x cols, max f32 x cols
//! then every array listed above, tier by tier in the order float32, int8, binary, each
//! starting on a 64-byte boundary (zero padding), and nothing after the last
//! ```
//!
//! Version 1 files (float32 blocks only, no norms: `... | cols u64 | width u64 x nblocks`,
//! blocks on 64-byte boundaries) are still read. All sizes use checked arithmetic and the file
//! length must match the header exactly.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Magic of the prefix-blocked layout.
pub const MAGIC: &[u8] = b"MATRYOFB";

/// A precision a file can store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    /// 1 bit per value: the sign.
    Binary = 0,
    /// Per-dimension 8-bit codes.
    Int8 = 1,
    /// The values.
    Float32 = 2,
}

impl Tier {
    /// Every tier, finest first.
    pub const ALL: [Tier; 3] = [Tier::Float32, Tier::Int8, Tier::Binary];

    /// `"float32"`, `"int8"` or `"binary"`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Float32 => "float32",
            Tier::Int8 => "int8",
            Tier::Binary => "binary",
        }
    }

    /// The tier called `name`.
    pub fn from_name(name: &str) -> Result<Tier> {
        Tier::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| {
                Error::InvalidPlan(format!(
                    "unknown precision {name:?} (known: float32, int8, binary)"
                ))
            })
    }

    fn bit(self) -> u32 {
        match self {
            Tier::Float32 => 1,
            Tier::Int8 => 2,
            Tier::Binary => 4,
        }
    }

    /// Bytes a block of `rows x width` takes in this tier.
    fn block_bytes(self, rows: u64, width: u64) -> Option<u64> {
        match self {
            Tier::Float32 => rows.checked_mul(width)?.checked_mul(4),
            Tier::Int8 => rows.checked_mul(width),
            Tier::Binary => rows.checked_mul(width.div_ceil(8)),
        }
    }
}

/// The de-quantization of the int8 tier, from the `(2, D)` ranges.
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Params {
    /// Per column, `min` (float32).
    pub start: Vec<f32>,
    /// Per column, `(max - min) / 255` in float32, 0 replaced by 1.
    pub step: Vec<f32>,
    /// The ranges as given: `cols` minima then `cols` maxima.
    pub ranges: Vec<f32>,
}

impl Int8Params {
    /// From `ranges` (`2 x cols`: the minima then the maxima); both finite, `min <= max`.
    pub fn new(ranges: &[f32], cols: usize) -> Result<Int8Params> {
        if ranges.len() != 2 * cols {
            return Err(Error::DimMismatch(format!(
                "int8 ranges must have shape (2, {cols}), got {} values",
                ranges.len()
            )));
        }
        let (lo, hi) = ranges.split_at(cols);
        if let Some(c) = (0..cols).find(|&c| !lo[c].is_finite() || !hi[c].is_finite()) {
            return Err(Error::DimMismatch(format!(
                "int8 ranges contain NaN or Inf (column {c})"
            )));
        }
        if let Some(c) = (0..cols).find(|&c| hi[c] < lo[c]) {
            return Err(Error::DimMismatch(format!(
                "int8 ranges: the max of column {c} ({}) is below its min ({})",
                hi[c], lo[c]
            )));
        }
        let step = lo
            .iter()
            .zip(hi)
            .map(|(&a, &b)| {
                let s = (b - a) / 255.0;
                if s == 0.0 {
                    1.0
                } else {
                    s
                }
            })
            .collect();
        Ok(Int8Params {
            start: lo.to_vec(),
            step,
            ranges: ranges.to_vec(),
        })
    }

    /// The code of value `x` in column `c` (as sentence-transformers computes it in float32).
    #[inline]
    pub fn code(&self, x: f32, c: usize) -> i8 {
        let u = ((x - self.start[c]) / self.step[c])
            .floor()
            .clamp(0.0, 255.0);
        (u as i32 - 128) as i8
    }

    /// The de-quantized value of `code` in column `c`: the centre of its bin,
    /// `min + step * (code + 128.5)`, in float32 (`code + 128.5` is exact).
    #[inline]
    pub fn value(&self, code: i8, c: usize) -> f32 {
        self.start[c] + self.step[c] * (f32::from(code) + 128.5)
    }
}

/// Where everything is in a file of a given shape, blocks and tiers (the one computation the
/// reader and the writer share).
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Format version (1 or 2).
    pub version: u32,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Block widths (they add up to `cols`).
    pub widths: Vec<usize>,
    /// The tiers present.
    pub tiers: Vec<Tier>,
    /// The int8 tier's parameters (when it is present).
    pub int8: Option<Int8Params>,
    /// Per tier present (in [`Tier::ALL`] order), its blocks' byte offsets.
    pub blocks: Vec<(Tier, Vec<usize>)>,
    /// Per float32/int8 tier present, the byte offsets of its per-block norm arrays.
    pub norms: Vec<(Tier, Vec<usize>)>,
    /// File length.
    pub len: u64,
}

impl Layout {
    /// Computes the layout; errors name what is too large or inconsistent.
    pub fn new(
        version: u32,
        rows: u64,
        cols: u64,
        widths: &[u64],
        tiers: &[Tier],
        int8: Option<Int8Params>,
        path: &str,
    ) -> Result<Layout> {
        let bad = |reason: String| Error::BadHeader {
            path: path.to_string(),
            reason,
        };
        let large = || bad(format!("shape ({rows}, {cols}) is too large"));
        if widths.is_empty() || cols == 0 {
            return Err(bad(format!(
                "{} blocks and {cols} columns: a corpus needs at least one of each",
                widths.len()
            )));
        }
        if let Some(b) = widths.iter().position(|&w| w == 0) {
            return Err(bad(format!("block {b} has width 0")));
        }
        let total = widths
            .iter()
            .try_fold(0u64, |a, &w| a.checked_add(w))
            .ok_or_else(|| bad("block widths overflow".into()))?;
        if total != cols {
            return Err(bad(format!(
                "the block widths add up to {total}, not to the {cols} columns"
            )));
        }
        if tiers.is_empty() {
            return Err(bad("the file holds no tier".into()));
        }
        let has = |t: Tier| tiers.contains(&t);
        if has(Tier::Binary) {
            if let Some(b) = widths[..widths.len() - 1].iter().position(|w| w % 8 != 0) {
                return Err(bad(format!(
                    "block {b} is {} wide: a binary tier needs every block but the last a multiple of 8",
                    widths[b]
                )));
            }
        }
        if has(Tier::Int8) != int8.is_some() {
            return Err(bad(
                "int8 ranges go with the int8 tier and only with it".into()
            ));
        }
        let usz = |v: u64| usize::try_from(v).map_err(|_| large());
        let mut end: u64 = if version == 1 {
            32 + 8 * widths.len() as u64
        } else {
            40 + 8 * widths.len() as u64 + if has(Tier::Int8) { 8 * cols } else { 0 }
        };
        let mut place = |size: u64| -> Result<usize> {
            let start = end.div_ceil(64).checked_mul(64).ok_or_else(large)?;
            end = start.checked_add(size).ok_or_else(large)?;
            usz(start)
        };
        let (mut blocks, mut norms) = (Vec::new(), Vec::new());
        for tier in Tier::ALL.into_iter().filter(|&t| has(t)) {
            let offs = widths
                .iter()
                .map(|&w| place(tier.block_bytes(rows, w).ok_or_else(large)?))
                .collect::<Result<Vec<_>>>()?;
            blocks.push((tier, offs));
            if tier != Tier::Binary && version >= 2 {
                let size = rows.checked_mul(4).ok_or_else(large)?;
                let offs = widths
                    .iter()
                    .map(|_| place(size))
                    .collect::<Result<Vec<_>>>()?;
                norms.push((tier, offs));
            }
        }
        Ok(Layout {
            version,
            rows: usz(rows)?,
            cols: usz(cols)?,
            widths: widths.iter().map(|&w| usz(w)).collect::<Result<_>>()?,
            tiers: Tier::ALL.into_iter().filter(|&t| has(t)).collect(),
            int8,
            blocks,
            norms,
            len: end,
        })
    }

    /// The tier's block offsets, if the file holds it.
    pub fn blocks_of(&self, tier: Tier) -> Option<&[usize]> {
        self.blocks
            .iter()
            .find(|(t, _)| *t == tier)
            .map(|(_, o)| o.as_slice())
    }

    /// The tier's norm-array offsets (one per block), if the file holds them.
    pub fn norms_of(&self, tier: Tier) -> Option<&[usize]> {
        self.norms
            .iter()
            .find(|(t, _)| *t == tier)
            .map(|(_, o)| o.as_slice())
    }

    /// `(first column, width)` of each block.
    pub fn columns(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.widths.iter().scan(0, |col, &w| {
            let c = *col;
            *col += w;
            Some((c, w))
        })
    }

    /// The header bytes.
    fn header(&self) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend(2u32.to_le_bytes());
        v.extend((self.widths.len() as u32).to_le_bytes());
        v.extend((self.rows as u64).to_le_bytes());
        v.extend((self.cols as u64).to_le_bytes());
        v.extend(
            self.tiers
                .iter()
                .map(|t| t.bit())
                .sum::<u32>()
                .to_le_bytes(),
        );
        v.extend(0u32.to_le_bytes());
        for &w in &self.widths {
            v.extend((w as u64).to_le_bytes());
        }
        if let Some(p) = &self.int8 {
            v.extend(p.ranges.iter().flat_map(|r| r.to_le_bytes()));
        }
        v
    }
}

/// Parses and validates a prefix-blocked header (version 1 or 2; see the module docs).
pub fn parse(bytes: &[u8], file_len: u64, path: &str) -> Result<Layout> {
    let bad = |reason: String| Error::BadHeader {
        path: path.to_string(),
        reason,
    };
    let truncated = || bad("truncated: the file ends inside the header".into());
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if bytes.len() < 32 || &bytes[..8] != MAGIC {
        return Err(bad("truncated prefix-blocked header".into()));
    }
    let version = u32_at(8).ok_or_else(truncated)?;
    if version != 1 && version != 2 {
        return Err(bad(format!(
            "unsupported prefix-blocked format version {version} (known: 1, 2)"
        )));
    }
    let nblocks = u32_at(12).ok_or_else(truncated)? as usize;
    let (rows, cols) = (
        u64_at(16).ok_or_else(truncated)?,
        u64_at(24).ok_or_else(truncated)?,
    );
    let (tiers, widths_at) = if version == 1 {
        (vec![Tier::Float32], 32)
    } else {
        let bits = u32_at(32).ok_or_else(truncated)?;
        if bits == 0 || bits > 7 || u32_at(36) != Some(0) {
            return Err(bad(format!("unknown tier set {bits:#x}")));
        }
        let tiers: Vec<Tier> = Tier::ALL
            .into_iter()
            .filter(|t| bits & t.bit() != 0)
            .collect();
        (tiers, 40)
    };
    // Each width takes 8 bytes of the header: more blocks than that cannot be read.
    if nblocks > bytes.len().saturating_sub(widths_at) / 8 {
        return Err(truncated());
    }
    let widths: Vec<u64> = (0..nblocks)
        .map(|b| u64_at(widths_at + 8 * b).ok_or_else(truncated))
        .collect::<Result<_>>()?;
    let int8 = if tiers.contains(&Tier::Int8) {
        let at = widths_at + 8 * nblocks;
        let n = usize::try_from(cols)
            .ok()
            .and_then(|c| c.checked_mul(8))
            .filter(|&n| at + n <= bytes.len())
            .ok_or_else(truncated)?;
        let vals: Vec<f32> = bytes[at..at + n]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let cols_u = n / 8;
        Some(Int8Params::new(&vals, cols_u).map_err(|e| bad(format!("corrupt int8 ranges: {e}")))?)
    } else {
        None
    };
    let layout = Layout::new(version, rows, cols, &widths, &tiers, int8, path)?;
    if layout.len > file_len {
        return Err(bad(format!(
            "truncated: the tiers need {} bytes, the file has {file_len}",
            layout.len
        )));
    }
    if layout.len < file_len {
        return Err(bad(format!(
            "the file has {} unexpected bytes after the last block",
            file_len - layout.len
        )));
    }
    Ok(layout)
}

/// Writes a prefix-blocked file from batches of rows, in row order, without holding the
/// corpus: each batch's pieces go straight to their places in every block and tier. The file
/// is written under a temporary name beside the target, flushed to disk, and renamed into
/// place by [`Writer::finish`]; dropped unfinished (an error, an interrupt), it is removed.
#[derive(Debug)]
pub struct Writer {
    layout: Layout,
    file: Option<File>,
    tmp: PathBuf,
    target: PathBuf,
    overwrite: bool,
    written: usize,
    /// Reused per batch: one block's bytes.
    buf: Vec<u8>,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl Writer {
    /// Starts a file of `rows x cols` with the given block widths and tiers; `ranges`
    /// (`2 x cols`, minima then maxima) is required with the int8 tier and refused without.
    pub fn create(
        path: &Path,
        rows: usize,
        widths: &[usize],
        tiers: &[Tier],
        ranges: Option<&[f32]>,
        overwrite: bool,
    ) -> Result<Writer> {
        let shown = path.display().to_string();
        let cols: usize = widths.iter().sum();
        let int8 = match (tiers.contains(&Tier::Int8), ranges) {
            (true, Some(r)) => Some(Int8Params::new(r, cols)?),
            (true, None) => return Err(Error::DimMismatch("the int8 tier needs ranges".into())),
            (false, _) => None,
        };
        let widths64: Vec<u64> = widths.iter().map(|&w| w as u64).collect();
        let layout = Layout::new(2, rows as u64, cols as u64, &widths64, tiers, int8, &shown)
            .map_err(|e| match e {
                Error::BadHeader { reason, .. } => Error::DimMismatch(reason),
                e => e,
            })?;
        if !overwrite && path.exists() {
            return Err(Error::Io {
                path: shown,
                message: "exists; pass overwrite=True to replace it (it is kept until the new \
                          file is complete)"
                    .into(),
            });
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            ".{name}.{}.{}.partial",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        let mut w = Writer {
            layout,
            file: None,
            tmp,
            target: path.to_path_buf(),
            overwrite,
            written: 0,
            buf: Vec::new(),
        };
        // From here on, dropping `w` removes the temporary file.
        let header = w.layout.header();
        let len = w.layout.len;
        let res = file.set_len(len).and_then(|()| file.write_all(&header));
        w.file = Some(file);
        res.map_err(io_err(&w.tmp))?;
        Ok(w)
    }

    /// The layout being written.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Rows written so far.
    pub fn rows_written(&self) -> usize {
        self.written
    }

    /// Appends `n` rows (`x` is `n x cols`, row-major, finite: the message names a bad row).
    pub fn write_rows(&mut self, x: &[f32]) -> Result<()> {
        let cols = self.layout.cols;
        if !x.len().is_multiple_of(cols) {
            return Err(Error::DimMismatch(format!(
                "a batch of {} values is not a whole number of rows of {cols}",
                x.len()
            )));
        }
        let n = x.len() / cols;
        if n > self.layout.rows - self.written {
            return Err(Error::DimMismatch(format!(
                "the file was started for {} rows; {} more do not fit",
                self.layout.rows,
                n + self.written - self.layout.rows
            )));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteRow {
                row: self.written + i / cols,
                dim: cols,
            });
        }
        let r0 = self.written;
        let cols_of: Vec<(usize, usize)> = self.layout.columns().collect();
        for (tier, offs) in self.layout.blocks.clone() {
            for (b, &(col, w)) in cols_of.iter().enumerate() {
                self.buf.clear();
                let rows = x.chunks_exact(cols).map(|r| &r[col..col + w]);
                match tier {
                    Tier::Float32 => rows.for_each(|r| {
                        self.buf.extend(r.iter().flat_map(|v| v.to_le_bytes()));
                    }),
                    Tier::Int8 => {
                        let p =
                            self.layout.int8.as_ref().ok_or_else(|| {
                                Error::DimMismatch("int8 tier without ranges".into())
                            })?;
                        for r in rows {
                            self.buf.extend(
                                r.iter().enumerate().map(|(i, &v)| p.code(v, col + i) as u8),
                            );
                        }
                    }
                    Tier::Binary => rows.for_each(|r| pack_bits(r, &mut self.buf)),
                };
                let size = tier.block_bytes(1, w as u64).unwrap_or(0) as usize;
                self.put(offs[b] + r0 * size)?;
            }
        }
        for (tier, offs) in self.layout.norms.clone() {
            let mut nn = vec![0.0f64; n];
            for (b, &(col, w)) in cols_of.iter().enumerate() {
                for (acc, r) in nn.iter_mut().zip(x.chunks_exact(cols)) {
                    for (i, &v) in r[col..col + w].iter().enumerate() {
                        let v = match (tier, &self.layout.int8) {
                            (Tier::Int8, Some(p)) => p.value(p.code(v, col + i), col + i),
                            _ => v,
                        };
                        *acc += f64::from(v) * f64::from(v);
                    }
                }
                self.buf.clear();
                self.buf
                    .extend(nn.iter().flat_map(|s| (s.sqrt() as f32).to_le_bytes()));
                self.put(offs[b] + r0 * 4)?;
            }
        }
        self.written += n;
        Ok(())
    }

    /// Writes `self.buf` at byte `at`.
    fn put(&mut self, at: usize) -> Result<()> {
        let file = self.file.as_mut().ok_or_else(|| Error::Io {
            path: self.tmp.display().to_string(),
            message: "the writer is closed".into(),
        })?;
        file.seek(SeekFrom::Start(at as u64))
            .and_then(|_| file.write_all(&self.buf))
            .map_err(io_err(&self.tmp))
    }

    /// Checks that every row was written, flushes the file to disk and renames it into place.
    pub fn finish(mut self) -> Result<PathBuf> {
        if self.written != self.layout.rows {
            return Err(Error::DimMismatch(format!(
                "only {} of the {} rows were written; the file was discarded",
                self.written, self.layout.rows
            )));
        }
        let file = self.file.take().ok_or_else(|| Error::Io {
            path: self.tmp.display().to_string(),
            message: "the writer is closed".into(),
        })?;
        file.sync_all().map_err(io_err(&self.tmp))?;
        drop(file);
        move_into_place(&self.tmp, &self.target, self.overwrite)?;
        Ok(self.target.clone())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.file.take().is_some() || self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Renames the finished `tmp` to `path`; without `overwrite`, never replaces a file (a hard
/// link fails atomically if the target appeared meanwhile).
fn move_into_place(tmp: &Path, path: &Path, overwrite: bool) -> Result<()> {
    if overwrite {
        return std::fs::rename(tmp, path).map_err(io_err(path));
    }
    match std::fs::hard_link(tmp, path) {
        Ok(()) => std::fs::remove_file(tmp).map_err(io_err(tmp)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::Io {
            path: path.display().to_string(),
            message: "was created by someone else while writing; nothing was replaced".into(),
        }),
        Err(_) if path.exists() => Err(Error::Io {
            path: path.display().to_string(),
            message: "exists; nothing was replaced".into(),
        }),
        Err(_) => std::fs::rename(tmp, path).map_err(io_err(path)),
    }
}

/// Appends `np.packbits(r > 0)`: column 0 in the most significant bit, the last byte
/// zero-padded.
pub fn pack_bits(r: &[f32], out: &mut Vec<u8>) {
    for chunk in r.chunks(8) {
        let mut byte = 0u8;
        for (i, &v) in chunk.iter().enumerate() {
            byte |= u8::from(v > 0.0) << (7 - i);
        }
        out.push(byte);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write(
        dir: &Path,
        name: &str,
        x: &[f32],
        rows: usize,
        widths: &[usize],
        tiers: &[Tier],
    ) -> Vec<u8> {
        let cols: usize = widths.iter().sum();
        let mut ranges = vec![-1.0f32; cols];
        ranges.extend(vec![1.0f32; cols]);
        let path = dir.join(name);
        let mut w = Writer::create(
            &path,
            rows,
            widths,
            tiers,
            Some(&ranges)
                .filter(|_| tiers.contains(&Tier::Int8))
                .map(|r| r.as_slice()),
            true,
        )
        .unwrap();
        for batch in x.chunks(7 * cols) {
            w.write_rows(batch).unwrap();
        }
        w.finish().unwrap();
        std::fs::read(path).unwrap()
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mf-blocked-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn roundtrip_every_tier_set() {
        let dir = tmpdir("rt");
        let (rows, widths) = (23usize, [16usize, 16, 5]);
        let cols = 37;
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 1013) as f32 / 506.5) - 1.0)
            .collect();
        for bits in 1u32..8 {
            let tiers: Vec<Tier> = Tier::ALL
                .into_iter()
                .filter(|t| bits & t.bit() != 0)
                .collect();
            let bytes = write(&dir, "a.mfb", &x, rows, &widths, &tiers);
            let l = parse(&bytes, bytes.len() as u64, "a").unwrap();
            assert_eq!(
                (l.rows, l.cols, l.tiers.clone()),
                (rows, cols, tiers.clone())
            );
            if let Some(offs) = l.blocks_of(Tier::Float32) {
                // Block 2, row 4, column 1 is x[4][33].
                let at = offs[2] + (4 * 5 + 1) * 4;
                assert_eq!(
                    f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()),
                    x[4 * cols + 33]
                );
                let n = l.norms_of(Tier::Float32).unwrap();
                let at = n[0] + 4 * 4;
                let want = x[4 * cols..4 * cols + 16]
                    .iter()
                    .map(|&v| f64::from(v).powi(2))
                    .sum::<f64>()
                    .sqrt() as f32;
                assert_eq!(
                    f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()),
                    want
                );
            }
            if let Some(offs) = l.blocks_of(Tier::Binary) {
                let mut want = Vec::new();
                pack_bits(&x[4 * cols + 32..5 * cols], &mut want);
                assert_eq!(bytes[offs[2] + 4], want[0]);
            }
            if let Some(offs) = l.blocks_of(Tier::Int8) {
                let p = l.int8.as_ref().unwrap();
                assert_eq!(
                    bytes[offs[1] + 4 * 16 + 3] as i8,
                    p.code(x[4 * cols + 19], 19)
                );
            }
            // A corrupt copy: every header byte changed in turn parses or fails, never panics.
            for pos in 0..64.min(bytes.len()) {
                let mut v = bytes.clone();
                v[pos] ^= 0x5a;
                let _ = parse(&v, v.len() as u64, "a");
            }
            assert!(
                parse(&bytes[..bytes.len() - 1], bytes.len() as u64 - 1, "a")
                    .unwrap_err()
                    .to_string()
                    .contains("truncated")
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn writer_refuses_bad_input_and_leaves_nothing() {
        let dir = tmpdir("bad");
        let path = dir.join("b.mfb");
        let err = |r: Result<Writer>| r.unwrap_err().to_string();
        assert!(err(Writer::create(&path, 3, &[8], &[Tier::Int8], None, false)).contains("ranges"));
        let nan = [f32::NAN, 0.0, 1.0, 1.0];
        assert!(err(Writer::create(
            &path,
            3,
            &[2],
            &[Tier::Int8],
            Some(&nan),
            false
        ))
        .contains("NaN"));
        assert!(err(Writer::create(
            &path,
            3,
            &[2],
            &[Tier::Int8],
            Some(&[0.0, 0.0, 1.0]),
            false
        ))
        .contains("shape"));
        assert!(err(Writer::create(
            &path,
            3,
            &[2],
            &[Tier::Int8],
            Some(&[2.0, 0.0, 1.0, 1.0]),
            false
        ))
        .contains("below"));
        assert!(err(Writer::create(
            &path,
            3,
            &[4, 4],
            &[Tier::Binary],
            None,
            false
        ))
        .contains("multiple of 8"));
        assert!(err(Writer::create(&path, 3, &[8], &[], None, false)).contains("no tier"));
        let mut w = Writer::create(&path, 3, &[2], &[Tier::Float32], None, false).unwrap();
        assert!(w
            .write_rows(&[1.0, f32::INFINITY])
            .unwrap_err()
            .to_string()
            .contains("row 0"));
        w.write_rows(&[1.0, 2.0]).unwrap();
        assert!(w
            .write_rows(&[1.0; 6])
            .unwrap_err()
            .to_string()
            .contains("do not fit"));
        assert!(w
            .finish()
            .unwrap_err()
            .to_string()
            .contains("only 1 of the 3"));
        // Nothing under the final name, and no temporary file left beside it.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    proptest! {
        #[test]
        fn fuzz_v2_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..400), bits in 0u32..9, nblocks in 0u32..5) {
            let mut v = MAGIC.to_vec();
            v.extend(2u32.to_le_bytes());
            v.extend(nblocks.to_le_bytes());
            v.extend(tail);
            if v.len() >= 36 {
                v[32..36].copy_from_slice(&bits.to_le_bytes());
            }
            let _ = parse(&v, v.len() as u64, "f");
        }
    }
}
