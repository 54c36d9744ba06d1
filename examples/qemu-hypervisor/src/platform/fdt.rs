//! A flattened device tree (FDT, the "DTB" format of the Devicetree
//! Specification v0.4, chapter 5) written into a caller's buffer, without
//! allocation.
//!
//! Layout written: the 40-byte header, an empty memory reservation block
//! (one all-zero entry), the structure block, then the strings block. Every
//! call checks the buffer's room and returns [`FdtError`] instead of
//! writing past it.

use core::fmt;

/// The header's magic.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// The format version written (17) and the oldest it is compatible with
/// (16).
pub const FDT_VERSION: u32 = 17;
const FDT_LAST_COMP_VERSION: u32 = 16;
/// Structure block tokens.
pub const FDT_BEGIN_NODE: u32 = 1;
/// End of a node.
pub const FDT_END_NODE: u32 = 2;
/// A property.
pub const FDT_PROP: u32 = 3;
/// End of the structure block.
pub const FDT_END: u32 = 9;
/// The header's size in bytes.
const HEADER: usize = 40;
/// Where the memory reservation block starts (8-byte aligned).
const RSVMAP: usize = HEADER;
/// Where the structure block starts: after one all-zero reservation entry.
const STRUCT: usize = RSVMAP + 16;
/// Room for property names (the strings block), deduplicated.
pub const STRINGS_MAX: usize = 512;

/// Why a tree could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FdtError {
    /// The buffer is too small for the tree.
    NoSpace,
    /// The property names do not fit the strings block ([`STRINGS_MAX`]
    /// bytes).
    StringsFull,
    /// A node or property name that is empty (only the root node's may
    /// be) or holds a NUL.
    BadName,
    /// `end_node` without a node open, a property outside any node, or
    /// `finish` with nodes still open.
    Unbalanced,
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoSpace => "the device tree does not fit its buffer",
            Self::StringsFull => "the device tree's property names do not fit the strings block",
            Self::BadName => "a device tree name is empty or holds a NUL",
            Self::Unbalanced => "device tree nodes opened and closed out of order",
        })
    }
}

impl core::error::Error for FdtError {}

/// Writes one tree into a buffer: open nodes, add properties, close
/// nodes, [`finish`](Self::finish).
pub struct FdtWriter<'a> {
    buf: &'a mut [u8],
    /// The end of the structure block written so far.
    at: usize,
    strings: [u8; STRINGS_MAX],
    strings_len: usize,
    /// Nodes open.
    depth: u32,
}

impl<'a> FdtWriter<'a> {
    /// A writer into `buf`, which must be 8-byte aligned where the tree
    /// will be read (the writer does not check addresses).
    ///
    /// # Errors
    ///
    /// [`FdtError::NoSpace`] if `buf` cannot hold even the header and the
    /// reservation block.
    pub fn new(buf: &'a mut [u8]) -> Result<Self, FdtError> {
        let head = buf.get_mut(..STRUCT).ok_or(FdtError::NoSpace)?;
        head.fill(0);
        Ok(Self {
            buf,
            at: STRUCT,
            strings: [0; STRINGS_MAX],
            strings_len: 0,
            depth: 0,
        })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), FdtError> {
        let end = self.at.checked_add(bytes.len()).ok_or(FdtError::NoSpace)?;
        self.buf
            .get_mut(self.at..end)
            .ok_or(FdtError::NoSpace)?
            .copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }

    fn put_u32(&mut self, value: u32) -> Result<(), FdtError> {
        self.put(&value.to_be_bytes())
    }

    /// Zero bytes up to the next 4-byte boundary.
    fn align(&mut self) -> Result<(), FdtError> {
        while !self.at.is_multiple_of(4) {
            self.put(&[0])?;
        }
        Ok(())
    }

    /// Opens a node named `name` (`""` for the root, else e.g.
    /// `"memory@48000000"`).
    ///
    /// # Errors
    ///
    /// [`FdtError::BadName`], [`FdtError::NoSpace`].
    pub fn begin_node(&mut self, name: &str) -> Result<(), FdtError> {
        if name.contains('\0') || (name.is_empty() && self.depth > 0) {
            return Err(FdtError::BadName);
        }
        self.put_u32(FDT_BEGIN_NODE)?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.align()?;
        self.depth += 1;
        Ok(())
    }

    /// Closes the innermost open node.
    ///
    /// # Errors
    ///
    /// [`FdtError::Unbalanced`] with no node open, [`FdtError::NoSpace`].
    pub fn end_node(&mut self) -> Result<(), FdtError> {
        if self.depth == 0 {
            return Err(FdtError::Unbalanced);
        }
        self.put_u32(FDT_END_NODE)?;
        self.depth -= 1;
        Ok(())
    }

    /// The offset of `name` in the strings block, adding it if new.
    fn string(&mut self, name: &str) -> Result<u32, FdtError> {
        if name.is_empty() || name.contains('\0') {
            return Err(FdtError::BadName);
        }
        let bytes = name.as_bytes();
        let used = self.strings.get(..self.strings_len).unwrap_or_default();
        let mut start = 0;
        for s in used.split(|&b| b == 0) {
            if s == bytes {
                return u32::try_from(start).map_err(|_| FdtError::StringsFull);
            }
            start += s.len() + 1;
        }
        let offset = self.strings_len;
        let end = offset + bytes.len() + 1;
        let slot = self
            .strings
            .get_mut(offset..end)
            .ok_or(FdtError::StringsFull)?;
        if let Some((nul, text)) = slot.split_last_mut() {
            text.copy_from_slice(bytes);
            *nul = 0;
        }
        self.strings_len = end;
        u32::try_from(offset).map_err(|_| FdtError::StringsFull)
    }

    /// Starts a property of `len` bytes; its value follows.
    fn prop_header(&mut self, name: &str, len: usize) -> Result<(), FdtError> {
        if self.depth == 0 {
            return Err(FdtError::Unbalanced);
        }
        let name = self.string(name)?;
        let len = u32::try_from(len).map_err(|_| FdtError::NoSpace)?;
        self.put_u32(FDT_PROP)?;
        self.put_u32(len)?;
        self.put_u32(name)
    }

    /// A property whose value is `value`'s bytes.
    ///
    /// # Errors
    ///
    /// [`FdtError`] for a bad name, a full buffer or strings block, or no
    /// node open.
    pub fn property(&mut self, name: &str, value: &[u8]) -> Result<(), FdtError> {
        self.prop_header(name, value.len())?;
        self.put(value)?;
        self.align()
    }

    /// An empty property (a flag such as `interrupt-controller`).
    ///
    /// # Errors
    ///
    /// As [`property`](Self::property).
    pub fn property_empty(&mut self, name: &str) -> Result<(), FdtError> {
        self.property(name, &[])
    }

    /// A property of big-endian 32-bit cells.
    ///
    /// # Errors
    ///
    /// As [`property`](Self::property).
    pub fn property_cells(&mut self, name: &str, cells: &[u32]) -> Result<(), FdtError> {
        self.prop_header(name, cells.len() * 4)?;
        for &c in cells {
            self.put_u32(c)?;
        }
        Ok(())
    }

    /// A property of one 32-bit cell.
    ///
    /// # Errors
    ///
    /// As [`property`](Self::property).
    pub fn property_u32(&mut self, name: &str, value: u32) -> Result<(), FdtError> {
        self.property_cells(name, &[value])
    }

    /// A property of big-endian 64-bit values (two cells each: an address
    /// or size with `#address-cells = <2>`).
    ///
    /// # Errors
    ///
    /// As [`property`](Self::property).
    pub fn property_u64s(&mut self, name: &str, values: &[u64]) -> Result<(), FdtError> {
        self.prop_header(name, values.len() * 8)?;
        for &v in values {
            self.put(&v.to_be_bytes())?;
        }
        Ok(())
    }

    /// A NUL-terminated string property.
    ///
    /// # Errors
    ///
    /// As [`property`](Self::property).
    pub fn property_str(&mut self, name: &str, value: &str) -> Result<(), FdtError> {
        self.property_strs(name, &[value])
    }

    /// A string-list property: each string NUL-terminated, one after the
    /// other (`compatible = "a", "b"`).
    ///
    /// # Errors
    ///
    /// As [`property`](Self::property); [`FdtError::BadName`] for a string
    /// holding a NUL.
    pub fn property_strs(&mut self, name: &str, values: &[&str]) -> Result<(), FdtError> {
        if values.iter().any(|v| v.contains('\0')) {
            return Err(FdtError::BadName);
        }
        let len = values.iter().map(|v| v.len() + 1).sum();
        self.prop_header(name, len)?;
        for v in values {
            self.put(v.as_bytes())?;
            self.put(&[0])?;
        }
        self.align()
    }

    /// Ends the structure block, appends the strings and fills the header.
    /// Returns the tree's total size in bytes.
    ///
    /// # Errors
    ///
    /// [`FdtError::Unbalanced`] with a node still open (or none written),
    /// [`FdtError::NoSpace`].
    pub fn finish(mut self) -> Result<usize, FdtError> {
        if self.depth != 0 || self.at == STRUCT {
            return Err(FdtError::Unbalanced);
        }
        self.put_u32(FDT_END)?;
        let struct_size = self.at - STRUCT;
        let strings_at = self.at;
        let strings_len = self.strings_len;
        let strings = self.strings;
        self.put(strings.get(..strings_len).unwrap_or_default())?;
        let total = self.at;
        let word = |n: usize| u32::try_from(n).map_err(|_| FdtError::NoSpace);
        let header = [
            FDT_MAGIC,
            word(total)?,
            word(STRUCT)?,
            word(strings_at)?,
            word(RSVMAP)?,
            FDT_VERSION,
            FDT_LAST_COMP_VERSION,
            0,
            word(strings_len)?,
            word(struct_size)?,
        ];
        for (slot, value) in self.buf.chunks_exact_mut(4).zip(header) {
            slot.copy_from_slice(&value.to_be_bytes());
        }
        Ok(total)
    }
}

#[cfg(test)]
pub(crate) mod reader {
    //! A tree reader for the tests, written from the specification's text
    //! independently of the writer: it checks the header, alignment and
    //! tokens, and flattens the tree to `(path, property, value)`.
    extern crate std;
    use std::string::String;
    use std::vec::Vec;

    use super::*;

    /// Every property of the tree as `("/path/to/node", name, value)`, and
    /// every node's path, or what is wrong with the blob.
    pub(crate) struct Tree {
        pub(crate) nodes: Vec<String>,
        pub(crate) props: Vec<(String, String, Vec<u8>)>,
    }

    impl Tree {
        pub(crate) fn prop(&self, path: &str, name: &str) -> Option<&[u8]> {
            self.props
                .iter()
                .find(|(p, n, _)| p == path && n == name)
                .map(|(_, _, v)| v.as_slice())
        }

        pub(crate) fn cells(&self, path: &str, name: &str) -> Option<Vec<u32>> {
            let v = self.prop(path, name)?;
            (v.len() % 4 == 0).then(|| {
                v.chunks(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            })
        }

        pub(crate) fn strs(&self, path: &str, name: &str) -> Option<Vec<String>> {
            let v = self.prop(path, name)?;
            let body = v.strip_suffix(&[0])?;
            Some(
                body.split(|&b| b == 0)
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            )
        }
    }

    fn be32(blob: &[u8], at: usize) -> Result<u32, String> {
        blob.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| std::format!("read past the end at {at}"))
    }

    pub(crate) fn read(blob: &[u8]) -> Result<Tree, String> {
        if be32(blob, 0)? != FDT_MAGIC {
            return Err("bad magic".into());
        }
        let total = be32(blob, 4)? as usize;
        let off_struct = be32(blob, 8)? as usize;
        let off_strings = be32(blob, 12)? as usize;
        let off_rsvmap = be32(blob, 16)? as usize;
        let version = be32(blob, 20)?;
        let size_strings = be32(blob, 32)? as usize;
        let size_struct = be32(blob, 36)? as usize;
        if total != blob.len()
            || version != 17
            || !off_rsvmap.is_multiple_of(8)
            || !off_struct.is_multiple_of(4)
        {
            return Err(std::format!("bad header: total {total} of {}", blob.len()));
        }
        if off_struct + size_struct > off_strings || off_strings + size_strings > total {
            return Err("blocks overlap or overrun".into());
        }
        // The reservation block ends with an all-zero entry.
        if blob.get(off_rsvmap..off_rsvmap + 16) != Some(&[0; 16][..]) {
            return Err("reservation block not terminated".into());
        }
        let strings = &blob[off_strings..off_strings + size_strings];
        let mut path: Vec<String> = Vec::new();
        let mut tree = Tree {
            nodes: Vec::new(),
            props: Vec::new(),
        };
        let mut at = off_struct;
        loop {
            let token = be32(blob, at)?;
            at += 4;
            match token {
                FDT_BEGIN_NODE => {
                    let rest = &blob[at..];
                    let len = rest
                        .iter()
                        .position(|&b| b == 0)
                        .ok_or("unterminated name")?;
                    path.push(String::from_utf8_lossy(&rest[..len]).into_owned());
                    at = (at + len + 1).next_multiple_of(4);
                    tree.nodes.push(join(&path));
                }
                FDT_END_NODE => {
                    path.pop().ok_or("END_NODE without node")?;
                }
                FDT_PROP => {
                    let len = be32(blob, at)? as usize;
                    let nameoff = be32(blob, at + 4)? as usize;
                    at += 8;
                    let value = blob.get(at..at + len).ok_or("value overruns")?.to_vec();
                    at = (at + len).next_multiple_of(4);
                    let name = strings.get(nameoff..).ok_or("bad name offset")?;
                    let end = name.iter().position(|&b| b == 0).ok_or("bad name")?;
                    let name = String::from_utf8_lossy(&name[..end]).into_owned();
                    if path.is_empty() {
                        return Err("property outside a node".into());
                    }
                    tree.props.push((join(&path), name, value));
                }
                4 => {}
                FDT_END => {
                    if !path.is_empty() || at != off_struct + size_struct {
                        return Err("END inside a node or size mismatch".into());
                    }
                    return Ok(tree);
                }
                other => return Err(std::format!("bad token {other} at {}", at - 4)),
            }
        }
    }

    fn join(path: &[String]) -> String {
        let inner: Vec<&str> = path.iter().skip(1).map(String::as_str).collect();
        std::format!("/{}", inner.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(buf: &mut [u8]) -> Result<usize, FdtError> {
        let mut w = FdtWriter::new(buf)?;
        w.begin_node("")?;
        w.property_u32("#address-cells", 2)?;
        w.property_strs("compatible", &["a,b", "c"])?;
        w.begin_node("child@1")?;
        w.property_u64s("reg", &[0x4800_0000, 0x1000_0000])?;
        w.property_empty("flag")?;
        w.property("bytes", &[1, 2, 3])?;
        w.property_u32("#address-cells", 1)?;
        w.end_node()?;
        w.end_node()?;
        w.finish()
    }

    #[test]
    fn a_tree_reads_back() {
        let mut buf = [0_u8; 1024];
        let size = build(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        let tree = reader::read(&buf[..size]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tree.nodes, ["/", "/child@1"]);
        assert_eq!(tree.cells("/", "#address-cells"), Some([2].to_vec()));
        assert_eq!(tree.cells("/child@1", "#address-cells"), Some([1].to_vec()));
        assert_eq!(
            tree.strs("/", "compatible"),
            Some(["a,b".into(), "c".into()].to_vec())
        );
        assert_eq!(
            tree.cells("/child@1", "reg"),
            Some([0, 0x4800_0000, 0, 0x1000_0000].to_vec())
        );
        assert_eq!(tree.prop("/child@1", "flag"), Some(&[][..]));
        assert_eq!(tree.prop("/child@1", "bytes"), Some(&[1, 2, 3][..]));
        // "#address-cells" is stored once in the strings block.
        let strings_size = u32::from_be_bytes([buf[32], buf[33], buf[34], buf[35]]);
        assert_eq!(
            strings_size as usize,
            "#address-cells\0compatible\0reg\0flag\0bytes\0".len()
        );
    }

    #[test]
    fn every_short_buffer_is_an_error_not_a_panic() {
        let mut buf = [0_u8; 1024];
        let size = build(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        for len in 0..size {
            let mut small = [0_u8; 1024];
            assert_eq!(build(&mut small[..len]), Err(FdtError::NoSpace), "{len}");
        }
    }

    #[test]
    fn unbalanced_and_bad_names_are_errors() {
        let mut buf = [0_u8; 256];
        let mut w = FdtWriter::new(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.end_node(), Err(FdtError::Unbalanced));
        assert_eq!(w.property_u32("x", 1), Err(FdtError::Unbalanced));
        assert_eq!(w.begin_node("a\0b"), Err(FdtError::BadName));
        assert_eq!(w.begin_node(""), Ok(()));
        assert_eq!(w.begin_node(""), Err(FdtError::BadName));
        assert_eq!(w.property_u32("", 1), Err(FdtError::BadName));
        assert_eq!(w.property_str("s", "a\0"), Err(FdtError::BadName));
        assert_eq!(w.finish(), Err(FdtError::Unbalanced));
        let mut buf = [0_u8; 256];
        let w = FdtWriter::new(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.finish(), Err(FdtError::Unbalanced));
    }

    #[test]
    fn too_many_names_fill_the_strings_block() {
        let mut buf = [0_u8; 8192];
        let mut w = FdtWriter::new(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.begin_node(""), Ok(()));
        let name = [b'n'; 100];
        let mut result = Ok(());
        for i in 0..10_u8 {
            let mut n = name;
            n[0] = b'a' + i;
            let n = core::str::from_utf8(&n).unwrap_or_default();
            result = result.and(w.property_empty(n));
        }
        assert_eq!(result, Err(FdtError::StringsFull));
    }
}
