#!/usr/bin/env bash
# Set-up for `cargo bench --bench latency`: installs the peers the benchmark
# compares sprout with (bubblewrap, runc, crun) from Debian's archive. Nothing
# else is downloaded: the peers' root filesystem and OCI bundles are built by
# the benchmark itself at run time from this host's /usr, /lib*, /bin, /sbin
# and /etc (read-only bind mounts), the same host root sprout's sandboxes use.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "benches/setup.sh: installing packages needs root" >&2
    exit 2
fi

missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v runc >/dev/null || missing+=(runc)
command -v crun >/dev/null || missing+=(crun)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
for tool in bwrap runc crun; do
    printf '%-6s %s\n' "$tool" "$("$tool" --version 2>&1 | head -1)"
done
