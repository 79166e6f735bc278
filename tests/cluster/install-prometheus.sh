#!/usr/bin/env bash
# Install Debian's `prometheus` package (2.42, a real Prometheus server) for the metrics tests,
# without starting its system service, and print the binary's path. Reused when present.
#
#   tests/cluster/install-prometheus.sh        # prints /usr/bin/prometheus
set -euo pipefail

if ! command -v prometheus >/dev/null 2>&1; then
  echo "install-prometheus: installing Debian's prometheus package" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The tests start their own Prometheus on loopback: keep the package's service from starting.
  policy=/usr/sbin/policy-rc.d
  own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
  fi
  trap 'if [ -n "$own_policy" ]; then rm -f "$policy"; fi' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
command -v prometheus
