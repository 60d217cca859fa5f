# Shared helpers for scripts/*. Source this file; it does not run anything by itself.
# shellcheck shell=bash

# The repository root, whatever the caller's current directory.
MPROC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Debian packages needed to build, test and benchmark mproc.
MPROC_PACKAGES=(g++ cmake make libcereal-dev googletest libgtest-dev libgmock-dev
                libbenchmark-dev python3
                libpcap-dev zlib1g-dev gnuplot-nox tcpdump tshark
                pkgconf dpkg-dev file)

# Installs whichever of MPROC_PACKAGES are missing. Without root or sudo it prints the command
# to run and exits 1, rather than failing later with a confusing CMake error.
mproc_ensure_packages() {
  local pkg missing=()
  for pkg in "${MPROC_PACKAGES[@]}"; do
    # dpkg-query fails for a package it has never heard of; that also means "missing".
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]} == 0)); then return 0; fi

  local sudo=()
  if ((EUID != 0)); then
    if command -v sudo >/dev/null; then
      sudo=(sudo)
    else
      echo "error: missing packages and no root or sudo. As root, run:" >&2
      echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
  fi
  echo "Installing missing packages: ${missing[*]}"
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# Configures and builds one preset from CMakePresets.json (dev or release).
mproc_build() {
  local preset="$1"
  (cd "$MPROC_ROOT" && cmake --preset "$preset" && cmake --build --preset "$preset" -j "$(nproc)")
}
