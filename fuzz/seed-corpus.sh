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
# HTTP/1.1 responses for `h1_response` (first byte: method and piece size).
mkdir -p "$corpus/h1_response"
printf '\x03HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok' > "$corpus/h1_response/length"
printf '\x05HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\n' > "$corpus/h1_response/chunked"
printf '\x01HTTP/1.0 200 OK\r\n\r\nuntil the end' > "$corpus/h1_response/eof"
printf '\x82HTTP/1.1 204 No Content\r\ncontent-length: 3\r\n\r\n' > "$corpus/h1_response/head"
# HTTP/1.1 requests for `h1_request` (first byte: piece size).
mkdir -p "$corpus/h1_request"
printf '\x03GET /a?b=1 HTTP/1.1\r\nHost: web\r\nl5d-dtab: /svc=>/srv\r\n\r\n' > "$corpus/h1_request/get"
printf '\x05POST /c HTTP/1.1\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n' > "$corpus/h1_request/pipelined"
printf '\x02POST /c HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n5;x=1\r\nhello\r\n0\r\nx-t: 1\r\n\r\n' > "$corpus/h1_request/chunked"
printf '\x01\r\nGET http://web/ HTTP/1.0\r\nconnection: keep-alive, x-hop\r\nx-hop: 1\r\n\r\n' > "$corpus/h1_request/http10"
echo "seeded fuzz/corpus/{dtab,nametree,path,h1_response,h1_request} from $n dtab files, 4 responses and 4 requests"
