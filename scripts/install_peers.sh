#!/usr/bin/env bash
# Install the external kernel peers of scripts/benchmark_kernels.py on the GPU machine (no network), from the
# carried .peers/ that scripts/fetch_peer_wheels.sh makes, into ${PEERS_DIR:-/tmp/peers}. Run from the
# repository root. Never fails: a peer that does not install is reported here, and the benchmark then says
# "not installed" for it.
#
# - unpacks .peers/site.tar.xz (cuEquivariance, trifast, DeepSpeed's missing imports, CUTLASS headers) into
#   $PEERS_DIR/site;
# - builds and installs DeepSpeed from its sdist (pip --no-build-isolation: the image's torch and setuptools);
# - starts the JIT build of DS4Sci_EvoformerAttention's CUDA op in the background (its PID in
#   $PEERS_DIR/ds_build.pid, its log in ${OUT:-/tmp}/ds_evoformer_build.log) for this GPU's architecture only
#   (TORCH_CUDA_ARCH_LIST), MAX_JOBS=16, into $PEERS_DIR/torch_extensions. By default the build is trimmed to
#   what runs on an Ampere-or-newer GPU in bf16 (the CUTLASS kernels' Sm80 bf16 instantiations: their
#   dispatch would also compile Sm70/Sm75 and fp16 ones, 4x as many kernels); DS_EVOFORMER_FULL=1 builds all.
#   A later load() of the op (the benchmark's) waits for this build through torch's extension lock;
# - writes $PEERS_DIR/env.sh (PYTHONPATH, CUTLASS_PATH, the build settings): source it before the benchmark.
set -uo pipefail
cd "$(dirname "$0")/.."
src=${PEERS_SRC:-.peers}
dir=${PEERS_DIR:-/tmp/peers}
site=$dir/site
out=${OUT:-/tmp}
start=$SECONDS
if [ ! -s "$src/site.tar.xz" ]; then
    echo "install_peers: no $src/site.tar.xz (run scripts/fetch_peer_wheels.sh with network and carry $src):" \
        "peers not installed"
    exit 0
fi
if [ "$(cat "$dir/manifest.txt" 2>/dev/null)" != "$(cat "$src/manifest.txt")" ]; then
    rm -rf "$dir"
    mkdir -p "$site"
    tar -xJf "$src/site.tar.xz" -C "$site" && cp "$src/manifest.txt" "$dir/"
    echo "install_peers: unpacked $src/site.tar.xz ($(du -sh "$site" | cut -f1)) in $((SECONDS - start)) s"
fi

arch=$(python3 -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null || echo 9.0)
# Shared libraries: libcue_ops.so needs libnvrtc.so.13 and libcublas.so.13 (it has no RPATH), the DS4Sci op
# links -lcurand; where the system's loader does not know them, use the torch wheel's nvidia-* copies
libs=$(python3 - "$dir/lib" <<'EOF'
import pathlib
import subprocess
import sys

try:
    import nvidia
except ImportError:
    raise SystemExit from None
known = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
found = {name: next((p for d in nvidia.__path__ for p in sorted(pathlib.Path(d).rglob(name + "*"))), None)
         for name in ("libnvrtc.so.13", "libcublas.so.13", "libcurand.so")}
dirs = [str(p.parent) for name, p in found.items() if p and name + " " not in known]
if found["libcurand.so"] and "libcurand.so " not in known:  # an unversioned name for the linker's -lcurand
    link = pathlib.Path(sys.argv[1], "libcurand.so")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(found["libcurand.so"])
    dirs.append(str(link.parent))
print(":".join(dict.fromkeys(dirs)))
EOF
)
cat >"$dir/env.sh" <<EOF
export PYTHONPATH="$site\${PYTHONPATH:+:\$PYTHONPATH}"
export CUTLASS_PATH="$site/cutlass-headers" TORCH_EXTENSIONS_DIR="$dir/torch_extensions"
export TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS=${MAX_JOBS:-16} DS_ACCELERATOR=cuda
${libs:+export LIBRARY_PATH="$libs\${LIBRARY_PATH:+:\$LIBRARY_PATH}" LD_LIBRARY_PATH="$libs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"}
EOF
# shellcheck source=/dev/null
source "$dir/env.sh"

if [ ! -d "$site/deepspeed" ]; then
    t=$SECONDS
    if python3 -m pip install --quiet --no-index --no-deps --no-build-isolation --no-compile --target "$site" \
            "$src"/deepspeed-*.tar.gz >"$dir/deepspeed_install.log" 2>&1; then
        echo "install_peers: deepspeed built from its sdist and installed in $((SECONDS - t)) s"
    else
        echo "install_peers: deepspeed install FAILED:"; tail -20 "$dir/deepspeed_install.log"
    fi
fi
utils=$site/deepspeed/ops/csrc/deepspeed4science/evoformer_attn/gemm_kernel_utils.h
if [ -f "$utils" ] && [ "${DS_EVOFORMER_FULL:-0}" != 1 ]; then
    python3 - "$utils" <<'EOF'
import re
import sys

path = sys.argv[1]
text = open(path).read()
# DISPATCH_ARCHTAG: keep the Sm80 branch (every GPU >= 8.0 takes it); DISPATCH_TYPES: keep bf16
trimmed = re.sub(r"\} else if \(\(CC\) >= 75\) \{.*?(?=\} else \{)", "", text, count=1, flags=re.S)
trimmed = re.sub(r"if \(tensor\.scalar_type\(\) == at::ScalarType::Half\) \{.*?\} else (?=if \(tensor)", "",
                 trimmed, count=1, flags=re.S)
archtag = trimmed[trimmed.find("#define DISPATCH_ARCHTAG"):trimmed.find("#define DISPATCH_TYPES")]
types = trimmed[trimmed.find("#define DISPATCH_TYPES"):trimmed.find("#define DISPATCH_BOOL")]
if text == trimmed:
    pass  # trimmed by an earlier run
elif "Sm80" in archtag and "Sm75" not in archtag and "BFloat16" in types and "Half" not in types:
    open(path, "w").write(trimmed)
    print("install_peers: DS4Sci build trimmed to Sm80+ bf16 (DS_EVOFORMER_FULL=1 builds all)")
else:
    print("install_peers: DS4Sci trim did not match this DeepSpeed version; building everything")
EOF
fi

if [ -d "$site/deepspeed" ]; then
    nohup python3 -c '
import time
t = time.time()
from deepspeed.ops.op_builder import EvoformerAttnBuilder
builder = EvoformerAttnBuilder()
print("CUTLASS include dirs:", builder.include_paths(), flush=True)
builder.load(verbose=True)
print(f"DS4Sci_EvoformerAttention op ready after {time.time() - t:.0f} s", flush=True)
' >"$out/ds_evoformer_build.log" 2>&1 &
    echo $! >"$dir/ds_build.pid"
    echo "install_peers: DS4Sci op JIT build started in the background (TORCH_CUDA_ARCH_LIST=$arch," \
        "log: $out/ds_evoformer_build.log)"
fi

python3 - <<'EOF'
import importlib
import importlib.metadata as md

import torch  # first: it loads the CUDA libraries that the peers' own libraries need  # noqa: F401

for peer, modules, dists in [
        ("cuEquivariance", ["cuequivariance_torch", "cuequivariance_ops_torch"],
         ["cuequivariance-torch", "cuequivariance-ops-torch-cu13"]),
        ("trifast", ["trifast"], ["trifast"]),
        ("DS4Sci_EvoformerAttention", ["deepspeed.ops.deepspeed4science"], ["deepspeed"])]:
    try:
        for module in modules:
            importlib.import_module(module)
        print(f"install_peers: {peer} OK ({', '.join(d + ' ' + md.version(d) for d in dists)})", flush=True)
    except Exception as error:  # report and go on: the benchmark says "not installed"
        print(f"install_peers: {peer} FAILED to import: {type(error).__name__}: {error}", flush=True)
EOF

echo "install_peers: done in $((SECONDS - start)) s; source $dir/env.sh"
