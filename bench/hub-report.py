#!/usr/bin/env python3
"""Summarises bench/hub.sh's CSV: one markdown row per variant and N with the median of
each figure over the rounds, then the issue's goals checked at the largest N (ratios
are taken between figures of the same run)."""
import csv
import math
import statistics
import sys

rows = list(csv.DictReader(open(sys.argv[1])))
if not rows:
    sys.exit("no results")
order, groups = [], {}
for r in rows:
    key = (r["variant"], int(r["n"]))
    if key not in groups:
        order.append(key)
        groups[key] = []
    groups[key].append(r)


def med(rs, k):
    vals = [float(r[k]) for r in rs if r[k] not in ("nan", "")]
    return statistics.median(vals) if vals else float("nan")


table = {}
for key in order:
    rs = groups[key]
    table[key] = {k: med(rs, k) for k in rs[0] if k not in ("variant", "round", "n")}
    table[key]["rounds"] = len(rs)
    table[key]["stalled_max"] = max(int(r["stalled_s"]) for r in rs)

print("| variant | N | aggregate TCP Gbit/s | slowest / fastest initiator | Jain | stalled s (max) | ping loss % | RTT under load ms | retransmits | responder CPU s/GB | initiators' CPU s/GB | threads | RSS MiB | kernel drops: responder TUN / UDP, initiators' TUN |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for key in sorted(order, key=lambda k: (order.index((k[0], min(n for v, n in order if v == k[0]))), k[1])):
    t = table[key]
    print("| %s | %d | %.2f | %.3f / %.3f | %.3f | %d | %.1f | %.2f | %d | %.3f | %s | %d | %.1f | %d / %d / %d |" % (
        key[0], key[1], t["aggregate_gbps"], t["min_gbps"], t["max_gbps"], t["jain"], t["stalled_max"],
        t["ping_loss_pct"], t["rtt_ms"], t["retransmits"], t["cpu_s_per_gb"],
        "n/a" if math.isnan(t.get("init_cpu_s_per_gb", math.nan)) else "%.3f" % t["init_cpu_s_per_gb"],
        t["threads"], t["rss_mib"],
        t.get("resp_tun_drops", -1), t.get("resp_udp_rcvbuf_errors", -1), t.get("init_tun_drops", -1)))
rounds = max(t["rounds"] for t in table.values())
print("\n(medians of %d rounds; the variants alternate within each round)" % rounds)

ns = sorted({n for _, n in order})
top, low = ns[-1], ns[0]


def get(variant, n, k):
    return table.get((variant, n), {}).get(k, float("nan"))


print("\nAt N = %d:" % top)
for v in ("cyphonic-single", "cyphonic-multi"):
    if (v, top) not in table:
        continue
    rtt_top, rtt_low = get(v, top, "rtt_ms"), get(v, low, "rtt_ms")
    print("- %s: ping loss %.1f %%, RTT %.2f ms = %.2fx its RTT at N = %d, Jain %.3f, slowest initiator %.2fx the mean share, RSS %.1f MiB" % (
        v, get(v, top, "ping_loss_pct"), rtt_top, rtt_top / rtt_low, low, get(v, top, "jain"),
        get(v, top, "min_gbps") / (get(v, top, "aggregate_gbps") / top), get(v, top, "rss_mib")))
    if ("wireguard-go", top) in table:
        print("  aggregate %.2f Gbit/s = %.2fx wireguard-go" % (get(v, top, "aggregate_gbps"), get(v, top, "aggregate_gbps") / get("wireguard-go", top, "aggregate_gbps")))
if ("cyphonic-single", top) in table and ("cyphonic-multi", top) in table:
    per = []
    for s, m in zip([r for r in rows if r["variant"] == "cyphonic-single" and int(r["n"]) == top],
                    [r for r in rows if r["variant"] == "cyphonic-multi" and int(r["n"]) == top]):
        per.append("%.2fx" % (float(m["aggregate_gbps"]) / float(s["aggregate_gbps"])))
    print("- multi / single aggregate TCP: %.2fx (per round: %s); CPU per GB multi / single: %.2fx" % (
        get("cyphonic-multi", top, "aggregate_gbps") / get("cyphonic-single", top, "aggregate_gbps"), ", ".join(per),
        get("cyphonic-multi", top, "cpu_s_per_gb") / get("cyphonic-single", top, "cpu_s_per_gb")))
