#!/usr/bin/env bash
# Fetch the external kernel peers of scripts/benchmark_kernels.py for the GPU machine (Python 3.12, x86_64,
# no network) and pack them into .peers/, the one folder to carry (ignored by git). Run here, with network,
# from anywhere in the repository; idempotent (downloads are kept in .peers-cache/, never carried, and the
# pack is rebuilt only when the package list changes or a download is newer). scripts/install_peers.sh
# unpacks it on the GPU machine.
#
# .peers/site.tar.xz: the wheels below unpacked into one site tree (a wheel without .data/ or scripts is
#   installed by unzipping it), recompressed with xz -9e: the cuEquivariance wheels alone are ~75 MB as
#   wheels (deflate), over a transfer's 64 MiB, and ~26 MiB as xz. Left out: the gtest/gmock headers and
#   static libraries that cuequivariance-ops-cu13 ships at its top level, and everything of nvidia-cutlass
#   but the CUTLASS headers (cutlass-headers/include and cutlass-headers/tools/util/include: CUTLASS_PATH
#   for DS4Sci; a name Python cannot import, so that no empty namespace package `cutlass` appears).
# .peers/deepspeed-*.tar.gz: DeepSpeed publishes no wheel; install_peers.sh builds it there.
#
# Only what the GPU image lacks travels (its package list: torch, triton, numpy, scipy, sympy, networkx,
# opt-einsum, einops, jaxtyping, msgpack, py-cpuinfo, psutil, ninja, tqdm, pyyaml, packaging, setuptools,
# nvidia-ml-py, nvidia-cublas are there); typing-extensions travels because pydantic needs >= 4.16.
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
cache=.peers-cache
dest=.peers
pip=(python3 -m pip)
platform=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux2014_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64)
wheels=(
    cuequivariance==0.13.0 cuequivariance-torch==0.13.0 cuequivariance-ops-cu13==0.13.0
    cuequivariance-ops-torch-cu13==0.13.0     # cuEquivariance: triangle attention, triangle multiplication
    trifast==0.1.13 platformdirs==4.14.7      # trifast's triangle attention (Triton)
    pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
    typing-extensions==4.16.0 hjson==3.1.0    # DeepSpeed's imports that the GPU image lacks
    nvidia-cutlass==4.2.0.0                   # CUTLASS headers for DS4Sci_EvoformerAttention's JIT build
)
sdists=(deepspeed==0.19.8)

mkdir -p "$cache" "$dest"
"${pip[@]}" download --quiet --no-deps "${platform[@]}" -d "$cache" "${wheels[@]}"
"${pip[@]}" download --quiet --no-deps --no-binary=:all: -d "$cache" "${sdists[@]}"

manifest="layout 2: ${wheels[*]} ${sdists[*]}"  # bump the layout when the packing changes
pack=$dest/site.tar.xz
if [ -s "$pack" ] && [ "$(cat "$dest/manifest.txt" 2>/dev/null)" = "$manifest" ] \
        && [ -z "$(find "$cache" -type f -newer "$pack")" ]; then
    echo "$pack is up to date"
else
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    for spec in "${wheels[@]}"; do
        name=${spec%%==*}
        version=${spec#*==}
        wheel=$(ls "$cache/${name//-/_}-$version-"*.whl)
        case $name in
            nvidia-cutlass)
                unzip -q "$wheel" 'cutlass_library/source/include/*' 'cutlass_library/source/tools/util/include/*' \
                    -d "$stage/tmp"
                mkdir -p "$stage/site"
                mv "$stage/tmp/cutlass_library/source" "$stage/site/cutlass-headers"
                rm -rf "$stage/tmp" ;;
            cuequivariance-ops-cu13) unzip -q "$wheel" -x 'include/*' 'lib64/*' -d "$stage/site" ;;
            *) unzip -q -o "$wheel" -d "$stage/site" ;;
        esac
    done
    echo "packing $(du -sh "$stage/site" | cut -f1) into $pack (xz -9e, a minute or two)"
    rm -f "$pack"
    tar -C "$stage/site" -cf - . | xz -9e -T0 >"$pack.part"
    mv "$pack.part" "$pack"
    echo "$manifest" >"$dest/manifest.txt"
fi
rm -f "$dest"/deepspeed-*.tar.gz
cp "$cache/deepspeed-${sdists[0]#*==}.tar.gz" "$dest/"

du -b "$dest"/* | awk '{printf "%8.1f MiB  %s\n", $1 / 2^20, $2}'
total=$(du -cb "$dest"/* | tail -1 | cut -f1)
awk -v t="$total" -v d="$dest" 'BEGIN {printf "%8.1f MiB  total: carry %s\n", t / 2^20, d}'
if [ "$total" -gt $((55 * 2**20)) ]; then
    echo "warning: $dest is over 55 MiB; with the working tree it may exceed a transfer's 64 MiB" >&2
fi
