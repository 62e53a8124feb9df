#!/usr/bin/env python3
"""One initiator's tunnel set-ups (run inside its namespace by bench/setup.sh): for each
round, end the tunnel to NAME through the daemon's control socket, then time a DNS A
query to the node's resolver from sending it to the answer (which the resolver gives
only once the tunnel is up). Prints one line per set-up: milliseconds and the answer."""
import socket, struct, sys, time, random

control, name, rounds, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

def forget():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(control)
    s.sendall(b"forget " + name.encode() + b"\n")
    s.recv(4096)
    s.close()

def query():
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\x00" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    t0 = time.perf_counter()
    s.sendto(q, ("127.0.0.53", 53))
    r = s.recv(4096)
    ms = (time.perf_counter() - t0) * 1000
    rcode = r[3] & 0x0F
    answer = socket.inet_ntoa(r[-4:]) if rcode == 0 and struct.unpack(">H", r[6:8])[0] > 0 else "rcode=%d" % rcode
    return ms, answer

for _ in range(rounds):
    forget()
    time.sleep(pause)
    ms, answer = query()
    print("%.3f %s" % (ms, answer), flush=True)
