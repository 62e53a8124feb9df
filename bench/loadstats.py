"""What the hub benchmarks (bench/hub.sh, lab/eval.sh) read from their iperf3 and ping
output, shared so both count a load the same way. Imported by their inline Python."""
import json
import re


def tcp_flows(paths):
    """iperf3 TCP clients' JSON files -> (Gbit/s per flow, bytes received, retransmits,
    stalled seconds). A client that failed counts as a flow that got nothing and one
    stalled second; a stalled second is an interval in which a flow moved < 1 Mbit/s."""
    rates, total, retrans, stalled = [], 0, 0, 0
    for path in paths:
        try:
            j = json.load(open(path))
            e = j["end"]
            rates.append(e["sum_received"]["bits_per_second"] / 1e9)
            total += e["sum_received"]["bytes"]
            retrans += e["sum_sent"].get("retransmits", 0)
            stalled += sum(1 for iv in j["intervals"] if iv["sum"]["bits_per_second"] < 1e6)
        except Exception:
            rates.append(0.0)
            stalled += 1
    return rates, total, retrans, stalled


def jain(rates):
    """Jain's fairness index of the flows' rates (0 when nothing moved)."""
    agg = sum(rates)
    return agg * agg / (len(rates) * sum(r * r for r in rates)) if agg > 0 else 0


def ping_summary(path):
    """`ping -q` output -> (loss %, mean RTT in ms as text, "nan" when none answered)."""
    text = open(path).read()
    m = re.search(r"(\d+) packets transmitted, (\d+) received", text)
    loss = 100.0 * (1 - int(m.group(2)) / int(m.group(1))) if m else 100.0
    r = re.search(r"= [\d.]+/([\d.]+)/", text)
    return loss, r.group(1) if r else "nan"
