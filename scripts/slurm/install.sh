#!/usr/bin/env bash
# Install a local SLURM with accounting (slurm-wlm, slurmdbd, mariadb-server, munge) from apt.
# Idempotent: does nothing when every package is already installed.
set -euo pipefail

PACKAGES=(slurm-wlm slurmdbd mariadb-server munge)

die() { echo "slurm/install.sh: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (apt-get install needs it); try: sudo $0"
command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian/Ubuntu only"
command -v dpkg-query >/dev/null || die "dpkg-query not found: this script supports Debian/Ubuntu only"

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$pkg")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "slurm/install.sh: already installed: ${PACKAGES[*]}"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# A fresh image has empty package lists; refresh only then, or when a first try fails on stale lists.
if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    apt-get update -q -o DPkg::Lock::Timeout=300 || die "apt-get update failed"
fi
echo "slurm/install.sh: installing ${missing[*]}"
if ! apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}"; then
    apt-get update -q -o DPkg::Lock::Timeout=300 || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
fi
echo "slurm/install.sh: installed ${missing[*]}"
