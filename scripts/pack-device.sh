#!/usr/bin/env bash
# Packs what scripts/device-check.sh needs on the lent GPU machine (no package registry there,
# at most 64 MiB carried): a Node binary, the dependencies (with tsx, which runs the benchmarks
# from source) for Linux x64 only, the sources and benchmarks, the fixtures, and the Vulkan
# loader as .deb files. Everything lands in .device/ (git-ignored).
#   bash scripts/pack-device.sh      then run, with carry [".device"]:
#   mkdir -p /tmp/r && tar xJf .device/bundle.tar.xz -C /tmp/r && cd /tmp/r && bash scripts/device-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# (In a git worktree .git is a file; the exclude list is in the common git directory.)
exclude="$(git rev-parse --git-common-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
grep -qx '/.device/' "$exclude" 2>/dev/null || echo '/.device/' >> "$exclude"

rm -rf .device && mkdir -p .device/stage/bin
npm run -s build
cp "$(readlink -f "$(command -v node)")" .device/stage/bin/node
cp -r dist src bench package.json package-lock.json .npmrc tsconfig.json scripts .device/stage/
# Only the models device-check runs: with every fixture (the vision transformers came later)
# the bundle grew past the 64 MiB carried (69.7 MB, 2026-12-02).
mkdir -p .device/stage/fixtures/models && cp -r fixtures/data fixtures/models.json .device/stage/fixtures/
cp fixtures/models/resnet20.onnx fixtures/models/resnet56.onnx .device/stage/fixtures/models/
(cd .device/stage && npm ci --ignore-scripts --no-audit --no-fund >/dev/null)
# The type checker and the test libraries are not needed to run the benchmarks.
rm -rf .device/stage/node_modules/typescript .device/stage/node_modules/fast-check .device/stage/node_modules/ink-testing-library
# onnxruntime-node ships every platform's libraries; only Linux x64 runs there.
find .device/stage/node_modules/onnxruntime-node/bin/napi-v6 -mindepth 2 -maxdepth 2 ! -path '*/linux/x64' -exec rm -rf {} +
(cd .device/stage && tar cf - . | xz -T2 -6 > ../bundle.tar.xz)
# The Vulkan loader for WebGPU (Dawn), as the device README describes.
mkdir -p /tmp/amd64/partial .device/gl
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
apt-get $o update -qq && (cd .device/gl && apt-get $o download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
rm -rf .device/stage
du -sh .device/bundle.tar.xz .device/gl
