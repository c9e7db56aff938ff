#!/usr/bin/env bash
# On the GPU machine: the checks that need a GPU, and the lesion benchmark on cpu against webgpu
# (and cuda when its provider is present), printed as one table. Exits non-zero when a GPU result
# differs from the CPU's by more than 2 images in 10,000 (errors) or 1e-3 relative (gradient norms).
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/bin:$PATH"
for f in "${GL_DEBS:-/work/.device/gl}"/*.deb .device/gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done 2>/dev/null; ldconfig 2>/dev/null
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
out=${OUT:-/tmp/device-check}; mkdir -p "$out"
model=fixtures/models/resnet56.onnx; [ -f "$model" ] || model=fixtures/models/resnet20.onnx
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
for d in cpu webgpu cuda; do
  if node dist/cli.js lesion "$model" --device "$d" --k 1,2,4 --samples 5 --json "$out/lesion-$d.json" --force 2>"$out/lesion-$d.err"; then
    node dist/cli.js gradients "$model" --device "$d" --samples 5 --json "$out/gradients-$d.json" --force 2>"$out/gradients-$d.err" || true
    [ "$d" = cpu ] || node dist/cli.js gradients "$model" --device cpu --plan "$out/gradients-$d.json" --json "$out/gradients-cpu-$d.json" --force 2>/dev/null
  else
    echo "$d: $(tail -1 "$out/lesion-$d.err")"
  fi
done
node scripts/device-compare.mjs "$out"
