#!/usr/bin/env bash
# Make the classifier's default data, Fashion-MNIST, readable offline: the four official IDX files
# from Debian's dataset-fashion-mnist package, unpacked (no install, no root needed once apt's
# package lists exist) into the machine-wide cache that common.data reads:
#   ${NNC_SHARED_CACHE:-${XDG_CACHE_HOME:-~/.cache}/nn-compression}/datasets/fashion-mnist
# Nothing to do when the package is installed (/usr/share/datasets/fashion-mnist), when
# $NNC_FASHION_MNIST_DIR is set, or when the cache already holds the files. Without apt (Colab,
# macOS) it only says so: the notebooks then download the same files with torchvision when online.
# Progress goes to stderr; it never fails the command that calls it.
set -uo pipefail
files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
has_all() { for f in $files; do [ -f "$1/$f" ] || return 1; done; }
[ -n "${NNC_FASHION_MNIST_DIR:-}" ] && exit 0
has_all /usr/share/datasets/fashion-mnist && exit 0
base=${NNC_SHARED_CACHE-${XDG_CACHE_HOME:-$HOME/.cache}/nn-compression}   # set but empty or 0: the cache is off, as in common.env
case "$base" in ""|0) exit 0 ;; esac
dest=$base/datasets/fashion-mnist
has_all "$dest" && exit 0
if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
  echo "data.sh: no apt here; Fashion-MNIST will be downloaded by torchvision when a notebook needs it" >&2
  exit 0
fi
mkdir -p "$base" && exec 9>"$base/.lock-datasets" && flock 9
has_all "$dest" && exit 0
tmp=$(mktemp -d "$base/.fashion-mnist-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "data.sh: fetching Debian's dataset-fashion-mnist (31 MB) into $dest" >&2
get() { (cd "$tmp" && apt-get download -q dataset-fashion-mnist >/dev/null 2>&1); }
if ! get; then
  [ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1
  if ! get; then
    echo "data.sh: could not fetch dataset-fashion-mnist with apt; the notebooks will try torchvision's download" >&2
    exit 0
  fi
fi
dpkg-deb -x "$tmp"/dataset-fashion-mnist_*.deb "$tmp/x" || exit 0
src=$tmp/x/usr/share/datasets/fashion-mnist
has_all "$src" || { echo "data.sh: the package holds no IDX files under /usr/share/datasets/fashion-mnist" >&2; exit 0; }
mkdir -p "$tmp/out" && for f in $files; do mv "$src/$f" "$tmp/out/"; done
rm -rf "$dest" && mkdir -p "$(dirname "$dest")" && mv "$tmp/out" "$dest"
echo "data.sh: Fashion-MNIST ready in $dest" >&2
