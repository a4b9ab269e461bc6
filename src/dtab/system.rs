//! The system namers (`/$/...`), pure: they parse, they do not resolve.
//! CONTRACT: implemented by the dtab-binding work.

use super::path::Path;
use super::tree::NameTree;

/// What the system namers make of a path.
#[derive(Clone, Debug, PartialEq)]
pub enum SystemAnswer {
    /// `/$/inet/<host>/<port>/...` (and `/$/fixedinet`, `/$/io.buoyant.rinet`):
    /// a bound name whose endpoints come from resolving `host`.
    Inet {
        /// The client id, e.g. `/$/inet/127.0.0.1/8080`.
        id: Path,
        /// Host name or IP literal; empty means localhost.
        host: String,
        /// Port.
        port: u16,
        /// What follows the id.
        residual: Path,
    },
    /// A tree whose leaves are bound again: `/$/fail` → `!`, `/$/nil` → `$`,
    /// and the rewriting namers (`/$/io.buoyant.hostportPfx/...` → a new path).
    Tree(NameTree<Path>),
    /// `/$/<unknown>/...` or a malformed system path: a binding error.
    Error(String),
    /// Not a `/$/` path: the answer is `~`.
    NotSystem,
}

/// Ask the system namers about `path`.
pub fn lookup(path: &Path) -> SystemAnswer {
    let _ = path;
    todo!("CONTRACT: implemented by the dtab-binding work")
}
