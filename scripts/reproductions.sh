#!/usr/bin/env bash
# Regenerate docs/reproductions.md: every study at the quick scale, once with MNIST present
# and once without it (what a newcomer sees), one claim table each with its data column.
#
#   scripts/reproductions.sh DATA_ROOT [OUT]
#
# DATA_ROOT holds mnist/ (the IDX files; `trainlab data prepare mnist --download --root
# DATA_ROOT` puts them there). OUT (default ./reproductions) receives both batches of study
# folders. Exits 0 whatever the verdicts: a FAIL is a result to publish, not an error.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:?usage: scripts/reproductions.sh DATA_ROOT [OUT]}
out=${2:-reproductions}
empty=$(mktemp -d)
trap 'rm -rf "$empty"' EXIT
TL=.venv/bin/trainlab
TRAINLAB_DATA="$root" $TL study run --all --scale quick --no-db --force -q \
  --out "$out/with-mnist" || true
TRAINLAB_DATA="$empty" $TL study run --all --scale quick --no-db --force -q \
  --out "$out/without-mnist" || true
$TL study summary "$out/with-mnist" "$out/without-mnist" --markdown docs/reproductions.md \
  > /dev/null || true
echo "docs/reproductions.md rebuilt from $out/with-mnist and $out/without-mnist"
