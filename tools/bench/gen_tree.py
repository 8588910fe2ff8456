#!/usr/bin/env python3
"""Writes a deterministic benchmark tree: FILES files totalling about SIZE_MIB MiB of
incompressible bytes (seeded), spread over nested directories, plus the os-core
essentials (os-release with VERSION_ID, the bundle marker).

usage: gen_tree.py OUT_TREE VERSION [FILES] [SIZE_MIB]"""
import os
import random
import sys

out, version = sys.argv[1], int(sys.argv[2])
files = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
size = (int(sys.argv[4]) if len(sys.argv) > 4 else 1024) << 20
rng = random.Random(1234)
os.umask(0o022)
mean = size // files
for i in range(files):
    d = os.path.join(out, "usr", "share", "bench", f"d{i % 50:02d}", f"e{i % 7}")
    os.makedirs(d, exist_ok=True)
    n = rng.randint(mean // 2, mean * 3 // 2)
    with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
        f.write(rng.randbytes(n))
os.makedirs(os.path.join(out, "usr/lib"), exist_ok=True)
with open(os.path.join(out, "usr/lib/os-release"), "w") as f:
    f.write(f"NAME=bench\nVERSION_ID={version}\n")
os.makedirs(os.path.join(out, "usr/share/clear/bundles"), exist_ok=True)
open(os.path.join(out, "usr/share/clear/bundles/os-core"), "w").close()
