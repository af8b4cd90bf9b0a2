#!/usr/bin/env bash
# Installs the LLVM/MLIR 22 packages Ferrax builds against, the OpenMP runtime its threaded
# code calls, and the C compiler, linker and valgrind its libraries and tests use, when they
# are missing (Debian 12).
set -euo pipefail
packages=(llvm-22-dev libmlir-22-dev mlir-22-tools clang-22 libclang-22-dev libpolly-22-dev zlib1g-dev libzstd-dev
          libomp-22-dev gcc libc6-dev binutils valgrind)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
