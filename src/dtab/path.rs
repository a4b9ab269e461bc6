//! Paths: the names that dtabs rewrite.
//!
//! A [`Path`] is a sequence of non-empty byte-string [`Label`]s. Only the
//! "showable" characters (`0-9 A-Z a-z _ : . # $ % -`) are printed literally;
//! a label holding any other byte is printed entirely as `\xhh` escapes, as
//! Finagle's `Path.show` does, so that `Display` output always re-parses.

use std::fmt;
use std::sync::Arc;

/// Equality, hashing and order by what a window shows, not by which buffer
/// it is a window on (two equal labels or paths may come from different
/// texts, or from different places in one).
///
/// The same window on the same buffer is equal without reading it: a
/// request's name, cloned from the identification cache, meets the
/// binding cache's key cloned from the same one, and their labels are
/// otherwise bytes read only for that comparison, from cold cache lines.
macro_rules! compare_by {
    ($t:ty, $view:ident) => {
        impl PartialEq for $t {
            #[inline]
            fn eq(&self, other: &Self) -> bool {
                (self.start == other.start && self.len == other.len && self.same_buf(other))
                    || self.$view() == other.$view()
            }
        }

        impl Eq for $t {}

        impl std::hash::Hash for $t {
            #[inline]
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.$view().hash(state)
            }
        }

        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $t {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.$view().cmp(other.$view())
            }
        }
    };
}

/// One element of a [`Path`]: a non-empty byte string.
///
/// Shared, not copied, when cloned: every rewrite step builds new paths from
/// the labels of old ones. A label is a window on a shared buffer, so that
/// the labels parsed from one dtab share one copy of its text instead of
/// an allocation each (a large dtab has thousands of distinct labels).
#[derive(Clone)]
pub struct Label {
    buf: Arc<[u8]>,
    start: u32,
    len: u32,
}

/// Why some bytes cannot be a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// A label must hold at least one byte.
    #[error("a path label may not be empty")]
    Empty,
    /// Windows are 32-bit; no real name comes near this.
    #[error("a path label may hold at most 4 GiB")]
    TooLong,
}

/// Is `b` one of the characters a label may hold literally?
#[inline]
pub fn is_showable(b: u8) -> bool {
    SHOWABLE[usize::from(b)]
}

/// [`is_showable`] as a table: parsing a large dtab asks it for most bytes.
static SHOWABLE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'_' | b':' | b'.' | b'#' | b'$' | b'%' | b'-');
        b += 1;
    }
    t
};

impl Label {
    /// A label from raw bytes; any byte is allowed (it is escaped when shown).
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Result<Label, LabelError> {
        let buf = bytes.into();
        let len = buf.len();
        Label::within(&buf, 0, len)
    }

    /// The label `buf[start..start + len]`, sharing `buf`.
    pub fn within(buf: &Arc<[u8]>, start: usize, len: usize) -> Result<Label, LabelError> {
        if len == 0 {
            return Err(LabelError::Empty);
        }
        let end = start.checked_add(len).ok_or(LabelError::TooLong)?;
        match (u32::try_from(start), u32::try_from(len)) {
            (Ok(start), Ok(len)) if end <= buf.len() => Ok(Label {
                buf: Arc::clone(buf),
                start,
                len,
            }),
            _ => Err(LabelError::TooLong),
        }
    }

    /// The raw bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        let start = self.start as usize;
        // `within` checked the window; never empty in fact.
        self.buf
            .get(start..start + self.len as usize)
            .unwrap_or_default()
    }

    /// The label as UTF-8 text, when it is.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()).ok()
    }

    /// Whether every byte prints literally.
    pub fn is_showable(&self) -> bool {
        self.as_bytes().iter().all(|&b| is_showable(b))
    }
}

impl Label {
    /// Whether both are windows on one buffer (see [`compare_by`]).
    #[inline]
    fn same_buf(&self, other: &Label) -> bool {
        Arc::ptr_eq(&self.buf, &other.buf)
    }
}

compare_by!(Label, as_bytes);

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_showable() {
            // Showable bytes are ASCII, hence valid UTF-8.
            f.write_str(std::str::from_utf8(self.as_bytes()).map_err(|_| fmt::Error)?)
        } else {
            for b in self.as_bytes() {
                write!(f, "\\x{b:02x}")?;
            }
            Ok(())
        }
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Label({self})")
    }
}

/// A sequence of labels, written `/a/b/c`; the empty path is written `/`.
///
/// Cloning is cheap (the labels are shared), because paths are cached and
/// handed around by the binder, the router and the admin views. A path is a
/// window on a shared slice of labels: [`Path::take`] and [`Path::drop`]
/// (a lookup's residual) allocate nothing, and the paths parsed from one
/// dtab share one slice; the empty path holds none.
#[derive(Clone, Default)]
pub struct Path {
    labels: Option<Arc<[Label]>>,
    start: u32,
    len: u32,
}

impl Path {
    /// The empty path `/`.
    pub fn empty() -> Path {
        Path::default()
    }

    /// A path from labels.
    pub fn from_labels(labels: impl Into<Vec<Label>>) -> Path {
        Path::whole(Arc::from(labels.into()))
    }

    /// All of `labels`.
    fn whole(labels: Arc<[Label]>) -> Path {
        if labels.is_empty() {
            return Path::empty();
        }
        // No path comes near 4 billion labels (they would take 96 GB).
        let len = u32::try_from(labels.len()).unwrap_or(u32::MAX);
        Path {
            labels: Some(labels),
            start: 0,
            len,
        }
    }

    /// The labels `start..start + len` of a slice that is not built yet
    /// (the parser's, filled while the paths using it are made); holds
    /// nothing until [`Path::settle`] gives it the slice.
    pub(crate) fn pending(start: usize, len: usize) -> Option<Path> {
        Some(Path {
            labels: None,
            start: u32::try_from(start).ok()?,
            len: u32::try_from(len).ok()?,
        })
    }

    /// Give a [`Path::pending`] path its slice; `false` (and the path stays
    /// empty) if its window does not fit.
    pub(crate) fn settle(&mut self, labels: &Arc<[Label]>) -> bool {
        let fits = (self.start as usize)
            .checked_add(self.len as usize)
            .is_some_and(|end| end <= labels.len());
        if fits && self.len > 0 {
            self.labels = Some(Arc::clone(labels));
        } else {
            *self = Path::empty();
        }
        fits
    }

    /// A path from UTF-8 segments; `None` if any segment is empty.
    pub fn from_strs<S: AsRef<str>>(segments: &[S]) -> Option<Path> {
        segments
            .iter()
            .map(|s| Label::new(s.as_ref().as_bytes()).ok())
            .collect::<Option<Vec<_>>>()
            .map(Path::from_labels)
    }

    /// The labels.
    #[inline]
    pub fn elems(&self) -> &[Label] {
        match &self.labels {
            Some(labels) => {
                let start = self.start as usize;
                // `whole` and `settle` checked the window.
                labels
                    .get(start..start + self.len as usize)
                    .unwrap_or_default()
            }
            None => &[],
        }
    }

    /// Number of labels.
    #[inline]
    pub fn len(&self) -> usize {
        self.elems().len()
    }

    /// Whether this is `/`.
    pub fn is_empty(&self) -> bool {
        self.elems().is_empty()
    }

    /// Whether `prefix`'s labels are the first labels of `self`.
    pub fn starts_with(&self, prefix: &Path) -> bool {
        self.elems().starts_with(prefix.elems())
    }

    /// The first `n` labels (all of them if `n` is larger).
    pub fn take(&self, n: usize) -> Path {
        self.window(0, n.min(self.len()))
    }

    /// Everything after the first `n` labels.
    pub fn drop(&self, n: usize) -> Path {
        let n = n.min(self.len());
        self.window(n, self.len() - n)
    }

    /// The labels `from..from + len` of `self`, sharing its slice.
    fn window(&self, from: usize, len: usize) -> Path {
        match &self.labels {
            Some(labels) if len > 0 => Path {
                labels: Some(Arc::clone(labels)),
                // Within `self`'s window, which fits in u32.
                start: self.start + from as u32,
                len: len as u32,
            },
            _ => Path::empty(),
        }
    }

    /// `self ++ other`.
    pub fn concat(&self, other: &Path) -> Path {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        let mut v = Vec::with_capacity(self.len() + other.len());
        v.extend_from_slice(self.elems());
        v.extend_from_slice(other.elems());
        Path::from_labels(v)
    }

    /// `self` with one more label at the end.
    pub fn join(&self, label: Label) -> Path {
        let mut v = Vec::with_capacity(self.len() + 1);
        v.extend_from_slice(self.elems());
        v.push(label);
        Path::from_labels(v)
    }
}

impl Path {
    /// Whether both are windows on one slice of labels, or both hold none
    /// (see [`compare_by`]).
    #[inline]
    fn same_buf(&self, other: &Path) -> bool {
        match (&self.labels, &other.labels) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

compare_by!(Path, elems);

impl FromIterator<Label> for Path {
    /// Collected straight into the shared slice when the length is known.
    fn from_iter<I: IntoIterator<Item = Label>>(labels: I) -> Path {
        Path::whole(labels.into_iter().collect())
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("/");
        }
        for l in self.elems() {
            write!(f, "/{l}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({self})")
    }
}

impl serde::Serialize for Path {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(b: &[u8]) -> Label {
        Label::new(b).unwrap()
    }

    #[test]
    fn showable_labels_print_literally_others_fully_escaped() {
        assert_eq!(label(b"foo").to_string(), "foo");
        assert_eq!(label(b"_:.#$%-09azAZ").to_string(), "_:.#$%-09azAZ");
        // One bad byte escapes the whole element, lowercase hex.
        assert_eq!(label(b"a b").to_string(), "\\x61\\x20\\x62");
        assert_eq!(label(b"/").to_string(), "\\x2f");
        assert_eq!(label(&[0xff, 0x00]).to_string(), "\\xff\\x00");
        assert_eq!(label("é".as_bytes()).to_string(), "\\xc3\\xa9");
        assert!(!label(b"a*").is_showable());
        assert_eq!(Label::new(Vec::new()), Err(LabelError::Empty));
        // Windows on one buffer compare, hash and show by their bytes.
        let buf: Arc<[u8]> = Arc::from(&b"xfoo/foo"[..]);
        let (a, b) = (
            Label::within(&buf, 1, 3).unwrap(),
            Label::within(&buf, 5, 3).unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(a, label(b"foo"));
        assert_eq!(b.to_string(), "foo");
        assert_eq!(Label::within(&buf, 6, 3), Err(LabelError::TooLong));
        assert_eq!(Label::within(&buf, 8, 0), Err(LabelError::Empty));
        assert_eq!(Label::within(&buf, usize::MAX, 2), Err(LabelError::TooLong));
    }

    #[test]
    fn path_show() {
        assert_eq!(Path::empty().to_string(), "/");
        let p = Path::from_labels(vec![label(b"a"), label(b"b c")]);
        assert_eq!(p.to_string(), "/a/\\x62\\x20\\x63");
        assert_eq!(format!("{p:?}"), "Path(/a/\\x62\\x20\\x63)");
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            "\"/a/\\\\x62\\\\x20\\\\x63\""
        );
    }

    #[test]
    fn take_drop_concat_join() {
        let p = Path::from_strs(&["a", "b", "c"]).unwrap();
        assert_eq!(p.take(2).to_string(), "/a/b");
        assert_eq!(p.take(9), p);
        assert_eq!(p.drop(1).to_string(), "/b/c");
        assert_eq!(p.drop(9), Path::empty());
        assert_eq!(p.take(1).concat(&p.drop(1)), p);
        assert_eq!(Path::empty().concat(&p), p);
        assert_eq!(p.concat(&Path::empty()), p);
        assert_eq!(p.join(label(b"d")).to_string(), "/a/b/c/d");
        assert!(p.starts_with(&p.take(2)));
        assert!(p.starts_with(&Path::empty()));
        assert!(!p.take(2).starts_with(&p));
        assert_eq!(Path::from_strs(&["a", ""]), None);
    }
}
