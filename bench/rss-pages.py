#!/usr/bin/env python3
"""What a running process's RSS is made of, page by page (root: /proc/PID/pagemap).

Prints the resident MiB of each mapping (file and permissions, anonymous memory), then,
for the process's own executable, its resident pages by ELF section and its resident
`.text` by the module each page's code belongs to (Swift modules from the mangled
symbol names; the Swift runtime, CoreFoundation, ICU and other C/C++ code by prefix).

    python3 bench/rss-pages.py PID

The kernel maps a file's pages in blocks around each one first touched (fault-around,
64 KiB here), so a module's figure includes the code next to what ran. Needs binutils
(`readelf`, `nm`) and an executable with its symbol table (not stripped).
"""
import argparse
import bisect
import collections
import os
import re
import struct
import subprocess
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")


def mappings(pid):
    """(start, end, perms, file offset, path) of each mapping of `pid`."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            p = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in p[0].split("-"))
            out.append((start, end, p[1], int(p[2], 16), p[5].strip() if len(p) > 5 else ""))
    return out


def resident(pagemap, start, end):
    """Addresses of the resident pages in [start, end) (bit 63 of each pagemap entry)."""
    pagemap.seek(start // PAGE * 8)
    data = pagemap.read((end - start) // PAGE * 8)
    return [start + i * PAGE for i in range(len(data) // 8) if struct.unpack_from("<Q", data, i * 8)[0] >> 63]


def tool(*args):
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()


def module_of(symbol):
    """The module a symbol's code comes from, as far as its name tells."""
    m = re.match(r"_?\$s(\d+)(\w+)", symbol)
    if m:
        return m.group(2)[: int(m.group(1))]
    if re.match(r"_?\$s[sS]", symbol):
        return "Swift (standard library)"
    if symbol.startswith(("_ZN5swift", "swift_", "_swift")):
        return "Swift runtime"
    if "icu_" in symbol or re.match(r"u[a-z]*_\w+_7\d", symbol):
        return "ICU"
    if symbol.startswith(("CF", "_CF", "__CF")):
        return "CoreFoundation"
    if symbol.startswith(("dispatch_", "_dispatch", "_os_")):
        return "libdispatch"
    if symbol.startswith(("ccy_", "c_nio", "CNIO")):
        return "C shims"
    return "other C/C++"


def executable_breakdown(path, offsets):
    """Resident bytes of `path` by section and, for .text, by module; `offsets` are the
    file offsets of its resident pages."""
    segments = []  # (file offset, virtual address, file size) of each LOAD segment
    for line in tool("readelf", "-lW", path):
        f = line.split()
        if f and f[0] == "LOAD":
            segments.append((int(f[1], 16), int(f[2], 16), int(f[4], 16)))
    sections = []  # (address, size, name), sorted
    for line in tool("readelf", "-SW", path):
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        if m and int(m.group(2), 16):
            sections.append((int(m.group(2), 16), int(m.group(3), 16), m.group(1)))
    sections.sort()
    starts = [s[0] for s in sections]
    symbols = []
    for line in tool("nm", "-n", "--defined-only", path):
        f = line.split(" ", 2)
        if len(f) == 3 and f[1] in "tTwW":
            symbols.append((int(f[0], 16), f[2]))
    addresses = [s[0] for s in symbols]
    by_section, by_module = collections.Counter(), collections.Counter()
    for offset in offsets:
        va = next((v + offset - o for o, v, n in segments if o <= offset < o + n), None)
        if va is None:
            by_section["(outside the file's segments)"] += PAGE
            continue
        i = bisect.bisect_right(starts, va) - 1
        name = sections[i][2] if i >= 0 and va < sections[i][0] + sections[i][1] else "(between sections)"
        by_section[name] += PAGE
        if name == ".text":
            j = bisect.bisect_right(addresses, va + PAGE // 2) - 1
            by_module[module_of(symbols[j][1]) if j >= 0 else "(no symbol before it)"] += PAGE
    return by_section, by_module


def mib(n):
    return f"{n / 2**20:8.2f} MiB"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pid", type=int, help="the process to look at")
    parser.add_argument("--min-kib", type=int, default=64, help="leave out lines below this size (default 64)")
    args = parser.parse_args()
    exe = os.path.realpath(f"/proc/{args.pid}/exe")
    per_mapping, exe_offsets = collections.Counter(), []
    with open(f"/proc/{args.pid}/pagemap", "rb") as pagemap:
        for start, end, perms, offset, path in mappings(args.pid):
            if path == "[vsyscall]":
                continue
            pages = resident(pagemap, start, end)
            per_mapping[f"{os.path.basename(path) or '(anonymous)'} {perms}"] += len(pages) * PAGE
            if path == exe:
                exe_offsets += [p - start + offset for p in pages]
    floor = args.min_kib * 1024
    print(f"resident pages of PID {args.pid} ({exe}), by mapping:")
    for key, n in per_mapping.most_common():
        if n >= floor:
            print(f"{mib(n)}  {key}")
    print(f"{mib(sum(per_mapping.values()))}  in all")
    by_section, by_module = executable_breakdown(exe, exe_offsets)
    print(f"\n{os.path.basename(exe)}'s resident pages by section:")
    for key, n in by_section.most_common():
        if n >= floor:
            print(f"{mib(n)}  {key}")
    print(f"\n{os.path.basename(exe)}'s resident .text by module (each page counted for the code at its middle):")
    for key, n in by_module.most_common():
        if n >= floor:
            print(f"{mib(n)}  {key}")


if __name__ == "__main__":
    try:
        main()
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"rss-pages: {e}")
