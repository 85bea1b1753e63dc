#!/usr/bin/env bash
# Install the MSA and template search tools that fastfold/data/tools wraps: HMMER (jackhmmer, hmmsearch,
# hmmbuild), HH-suite (hhblits, hhsearch, hhmake, ffindex_build, cstranslate) and Kalign, from Debian's
# packages. Idempotent: does nothing when every binary is already on PATH. Uses sudo only when not root.
set -euo pipefail

binaries=(jackhmmer hmmsearch hmmbuild hhblits hhsearch hhmake ffindex_build kalign)
missing=()
for binary in "${binaries[@]}"; do
    command -v "$binary" >/dev/null 2>&1 || missing+=("$binary")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "Search tools already installed."
    exit 0
fi
echo "Missing: ${missing[*]}; installing hmmer hhsuite kalign."

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq hmmer hhsuite kalign
