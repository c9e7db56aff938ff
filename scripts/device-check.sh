#!/usr/bin/env bash
# On a GPU machine: bench/lesion (the single-block sweep through the engine), bench/gradients
# (sampled path gradients) and bench/gradients --exact (the exact decomposition by path length)
# on cpu, webgpu and cuda, each compared with the CPU in one table. Exits non-zero when a device
# that ran differs from the CPU (wrong images beyond 2 in 10,000, gradient norms or per-length
# norms beyond 1e-5 relative, shares beyond 1e-5 of the largest); a device that is not available
# here is said so in one line and listed, not failed.
#   DEVICE_CHECK_SIZE=full (default): resnet56 on the 1000 fixture images, 5 gradient batches of 32
#     on k = 0..27 (140 samples), the exact decomposition on the first 256 images in batches of 32;
#     meant to take well under 10 minutes on an H100/H200.
#   DEVICE_CHECK_SIZE=tiny: resnet20 on 32 images, 2 batches of 8 on k = 0,3,6,9, exact on 16
#     images in batches of 8, for trying the
#     script without a GPU (WebGPU on SwiftShader: set VK_ICD_FILENAMES, XDG_RUNTIME_DIR and
#     LD_LIBRARY_PATH as test/webgpu.test.ts does).
#   DEVICE_CHECK_DEVICES="cpu webgpu cuda" (default) chooses the devices; cpu, the reference, always runs.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/bin:$PATH"
for f in "${GL_DEBS:-/work/.device/gl}"/*.deb .device/gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done 2>/dev/null; ldconfig 2>/dev/null
if [ -z "${VK_ICD_FILENAMES:-}" ] && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
  export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
fi
out=${OUT:-/tmp/device-check}; mkdir -p "$out"
data=fixtures/data/t10k-images-idx3-ubyte
case "${DEVICE_CHECK_SIZE:-full}" in
  tiny) model=fixtures/models/resnet20.onnx; lesion=(--limit 32 --batch 32); grads=(--batches 2 --batch 8 --k 0,3,6,9); exact=(--limit 16 --batch 8) ;;
  full) model=fixtures/models/resnet56.onnx; lesion=(--batch 250); grads=(--batches 5 --batch 32 --k 0-27); exact=(--limit 256 --batch 32) ;;
  *) echo "DEVICE_CHECK_SIZE: '${DEVICE_CHECK_SIZE}' is not tiny or full" >&2; exit 2 ;;
esac
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
echo "model: $model; data: $data; size: ${DEVICE_CHECK_SIZE:-full}"
devices=" ${DEVICE_CHECK_DEVICES:-cpu webgpu cuda} "
[[ "$devices" == *" cpu "* ]] || devices=" cpu$devices"
for d in $devices; do
  # A device onnxruntime cannot use here: one line, and on to the next.
  # (The probe from dist/: it runs its module again in a child node, which runs JavaScript.)
  if [ "$d" != cpu ] && ! why=$(node --input-type=module -e "const r = await (await import('./dist/engine/device.js')).realProbe('$d', { explicit: true }); if (r) { console.log(r); process.exit(1); }" 2>&1); then
    echo "$d: not available here ($(echo "$why" | tail -1)); skipped" | tee "$out/lesion-$d.failed"
    continue
  fi
  start=$SECONDS
  node --import tsx bench/lesion.ts --device "$d" --methods engine --model "$model" --data "$data" "${lesion[@]}" --json "$out/lesion-$d.json" >"$out/lesion-$d.txt" 2>"$out/lesion-$d.err" \
    || echo "$d: lesion failed: $(grep -v '^\s*$' "$out/lesion-$d.err" | tail -1)" | tee "$out/lesion-$d.failed"
  node --import tsx bench/gradients.ts --device "$d" --no-torch --model "$model" --data "$data" "${grads[@]}" --json "$out/gradients-$d.json" >"$out/gradients-$d.txt" 2>"$out/gradients-$d.err" \
    || echo "$d: gradients failed: $(grep -v '^\s*$' "$out/gradients-$d.err" | tail -1)" | tee "$out/gradients-$d.failed"
  node --import tsx bench/gradients.ts --exact --device "$d" --no-torch --model "$model" --data "$data" "${exact[@]}" --json "$out/exact-$d.json" >"$out/exact-$d.txt" 2>"$out/exact-$d.err" \
    || echo "$d: exact failed: $(grep -v '^\s*$' "$out/exact-$d.err" | tail -1)" | tee "$out/exact-$d.failed"
  echo "$d: $((SECONDS - start)) s"
done
node scripts/device-compare.mjs "$out"
