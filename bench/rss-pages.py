#!/usr/bin/env python3
"""What a running process's RSS is made of, page by page (root: /proc/PID/pagemap).

Prints the resident MiB of each mapping (file and permissions, anonymous memory), then,
for the process's own executable, its resident pages by ELF section and its resident
`.text` by the module each page's code belongs to (Swift modules from the mangled
symbol names, standard-library generics specialised for a module counted to that
module; the Swift runtime, CoreFoundation, ICU and other C/C++ code by prefix).

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


GENERIC_NAMES = {"Element", "Index", "Indices", "Iterator", "SubSequence", "Key", "Value", "Base", "Wrapped", "Failure", "Output", "T", "U", "V"}


def identifiers(symbol):
    """The length-prefixed identifiers of a mangled Swift symbol, in order."""
    out, i = [], 0
    for m in re.finditer(r"(\d+)([A-Za-z_])", symbol):
        if m.start() < i:
            continue
        n = int(m.group(1))
        out.append(symbol[m.start(2) : m.start(2) + n])
        i = m.start(2) + n
    return out


def module_of(symbol, modules):
    """The module a symbol's code comes from, as far as its name tells. A Swift symbol
    belongs to the module it names first; a standard-library generic specialised for
    another module's types (`$ss...Tg5`) to the last module named in it, since that
    module's use is why the code is there; `modules` is the set of module names seen."""
    m = re.match(r"_?\$s(\d+)(\w+)", symbol)
    if m and m.group(2)[: int(m.group(1))] in modules:
        return m.group(2)[: int(m.group(1))]
    if re.match(r"_?\$sSo", symbol):
        return "Swift glue for imported C declarations"
    if re.match(r"_?\$s", symbol):
        named = [x for x in identifiers(symbol) if x in modules]
        return named[-1] if named else "Swift (standard library)"
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


def executable_breakdown(path, addresses):
    """Resident bytes of `path` by section and, for .text, by module; `addresses` are
    the link-time virtual addresses of its resident pages."""
    sections = []  # (address, size, name), sorted; TLS templates (.tbss) take no pages
    for line in tool("readelf", "-SW", path):
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        if m and int(m.group(2), 16) and m.group(1) != ".tbss":
            sections.append((int(m.group(2), 16), int(m.group(3), 16), m.group(1)))
    sections.sort()
    starts = [s[0] for s in sections]
    symbols = []
    for line in tool("nm", "-n", "--defined-only", path):
        f = line.split(" ", 2)
        if len(f) == 3 and f[1] in "tTwW":
            symbols.append((int(f[0], 16), f[2]))
    # Module names: the first identifier of many symbols, less generic parameters'
    # names, which some symbols (e.g. of associated types) start with too.
    firsts = collections.Counter(m.group(2)[: int(m.group(1))] for m in (re.match(r"_?\$s(\d+)(\w+)", s) for _, s in symbols) if m)
    modules = {name for name, n in firsts.items() if n >= 20 and name not in GENERIC_NAMES}
    symbol_starts = [s[0] for s in symbols]
    by_section, by_module = collections.Counter(), collections.Counter()
    for va in addresses:
        # A page is counted to the section at its middle (a segment may start mid-page).
        mid = va + PAGE // 2
        i = bisect.bisect_right(starts, mid) - 1
        name = sections[i][2] if i >= 0 and mid < sections[i][0] + sections[i][1] else "(between sections)"
        by_section[name] += PAGE
        if name == ".text":
            j = bisect.bisect_right(symbol_starts, mid) - 1
            by_module[module_of(symbols[j][1], modules) if j >= 0 else "(no symbol before it)"] += PAGE
    return by_section, by_module


def mib(n):
    return f"{n / 2**20:8.2f} MiB"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pid", type=int, help="the process to look at")
    parser.add_argument("--min-kib", type=int, default=64, help="leave out lines below this size (default 64)")
    args = parser.parse_args()
    exe = os.path.realpath(f"/proc/{args.pid}/exe")
    maps = mappings(args.pid)
    # Load bias: where the executable's first LOAD segment (file offset 0) was mapped,
    # less its link-time address; a resident page's link-time address is its address
    # less the bias, whether or not its segment starts on a page boundary.
    first_load = next(int(f[2], 16) for f in (line.split() for line in tool("readelf", "-lW", exe)) if f and f[0] == "LOAD")
    bias = min((start for start, _, _, offset, path in maps if path == exe and offset == 0), default=0) - first_load // PAGE * PAGE
    per_mapping, exe_pages = collections.Counter(), []
    with open(f"/proc/{args.pid}/pagemap", "rb") as pagemap:
        for start, end, perms, offset, path in maps:
            if path == "[vsyscall]":
                continue
            pages = resident(pagemap, start, end)
            per_mapping[f"{os.path.basename(path) or '(anonymous)'} {perms}"] += len(pages) * PAGE
            if path == exe:
                exe_pages += [p - bias for p in pages]
    floor = args.min_kib * 1024
    print(f"resident pages of PID {args.pid} ({exe}), by mapping:")
    for key, n in per_mapping.most_common():
        if n >= floor:
            print(f"{mib(n)}  {key}")
    print(f"{mib(sum(per_mapping.values()))}  in all")
    by_section, by_module = executable_breakdown(exe, exe_pages)
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
