#!/usr/bin/env bash
# Initialise an AS once. Every flag of `as-server init`, with the lab's values:
set -euo pipefail
args=(
  --data-dir /var/lib/cyphonic-as      # where as.db, ca.key (0600), ca.pem, as.key (0600), as.pem go; refused if already initialised
  --domain cyphonic.internal           # overlay domain: node NAME becomes NAME.cyphonic.internal
  --vip4 198.18.0.0/16                 # virtual IPv4 pool (node i gets the i-th host address)
  --vip6 2001:db8:c0ff:ee::/64         # virtual IPv6 pool (same host part as the IPv4 address)
  --nms 198.19.0.2:4502                # NMS endpoint(s) handed to nodes at login (repeatable)
  --trs 198.19.0.3:4503                # TRS endpoint(s) handed to nodes at login (repeatable)
  --cert-days 30                       # lifetime of node certificates
  --renew-before-days 10               # a login renews a certificate that expires within this many days
  # --service-name as.cyphonic.internal  # name in the AS's own certificate (default as.DOMAIN)
)
exec as-server init "${args[@]}"
