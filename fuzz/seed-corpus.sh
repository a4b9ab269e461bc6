#!/usr/bin/env bash
# Seed the fuzz corpora from the shipped dtabs: whole files for `dtab`, the
# right-hand sides for `nametree`, the prefixes for `path`.
# Usage: fuzz/seed-corpus.sh   (from anywhere)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
corpus="$root/fuzz/corpus"
mkdir -p "$corpus/dtab" "$corpus/nametree" "$corpus/path"
n=0
while IFS= read -r -d '' f; do
    name="$(basename "$(dirname "$f")")-$(basename "$f" .dtab)"
    cp "$f" "$corpus/dtab/$name.dtab"
    # One seed per dentry line: the tree after '=>' and the prefix before it.
    i=0
    { grep -v '^[[:space:]]*#' "$f" || true; } | { grep '=>' || true; } | while IFS= read -r line; do
        i=$((i + 1))
        rhs="${line#*=>}"
        rhs="${rhs%%;*}"
        printf '%s' "$rhs" > "$corpus/nametree/$name-$i"
        lhs="${line%%=>*}"
        printf '%s' "${lhs//[[:space:]]/}" > "$corpus/path/$name-$i"
    done
    n=$((n + 1))
done < <(find "$root/dtabs" -name '*.dtab' -print0)
echo "seeded fuzz/corpus/{dtab,nametree,path} from $n dtab files"
