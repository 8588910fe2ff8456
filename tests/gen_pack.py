#!/usr/bin/env python3
"""Independent generator of swupd packs in mixer's layout, for chainup's client tests.

Written from the format description (swupd's and Clear Linux's libbsdiff public formats,
bsheader.h/patch.c, as docs/formats.md restates them), not from chainup's code. Reads
W/<to>/Manifest.<bundle> and W/<from>/Manifest.<bundle> (plain text) and the fullfiles
they name (uncompressed, gzip, bzip2 or xz tars), and writes W/<to>/pack-<bundle>-from-<from>.tar
(xz), with top directories delta/ and staged/:
  delta/<from>-<to>-<fromhash>-<tohash>  Clear bsdiff delta for a file whose path the old
                                          manifest has with other content;
  staged/<hash>                           other new regular files (as mixer: with their
                                          owner and mode), staged/<hash>/ directories and
                                          staged/<hash> symlinks.
The delta keeps the common prefix and suffix as diff bytes and sends the middle as extra
bytes; block encodings rotate over none, gzip, bzip2, xz and zeros so that a client must
read them all.

usage: gen_pack.py --webroot W --bundle os-core --from 10 --to 20
"""
import argparse
import bz2
import gzip
import io
import lzma
import os
import struct
import tarfile

NONE, BZIP2, GZIP, XZ, ZEROS = range(5)
FLAG_BASE = (0, 5, 10)  # control, diff, extra: bits none, bzip2, gzip, xz, zeros


def manifest(webroot, version, bundle):
    """{path: (flags, hash, version)} of the present entries."""
    out = {}
    with open(os.path.join(webroot, str(version), f"Manifest.{bundle}")) as f:
        body = f.read().split("\n\n", 1)[1]
    for line in body.splitlines():
        flags, h, v, path = line.split("\t")
        if flags[1] in "dg":
            continue
        out[path] = (flags, h, int(v))
    return out


def fullfile(webroot, version, h):
    """(TarInfo, content) of a fullfile."""
    with tarfile.open(os.path.join(webroot, str(version), "files", f"{h}.tar"), "r:*") as t:
        info = t.getmembers()[0]
        data = t.extractfile(info).read() if info.isfile() else b""
    return info, data


def encode(raw, enc):
    if enc == NONE:
        return raw
    if enc == GZIP:
        return gzip.compress(raw, mtime=0)
    if enc == BZIP2:
        return bz2.compress(raw)
    if enc == XZ:
        return lzma.compress(raw)
    assert not any(raw)
    return struct.pack("<Q", len(raw))


def delta(old, new, mode, uid, gid, turn):
    prefix = 0
    while prefix < min(len(old), len(new)) and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while (suffix < min(len(old), len(new)) - prefix
           and old[-1 - suffix] == new[-1 - suffix]):
        suffix += 1
    old_mid = len(old) - prefix - suffix
    new_mid = new[prefix:len(new) - suffix]
    control = struct.pack("<qqq", prefix, len(new_mid), old_mid)
    control += struct.pack("<qqq", suffix, 0, 0)
    diff = bytes(prefix + suffix)  # unchanged bytes: nothing to add
    encs = [(NONE, XZ)[turn % 2], (ZEROS, GZIP, BZIP2, NONE, XZ)[turn % 5],
            (NONE, GZIP, BZIP2, XZ)[turn % 4]]
    if encs[1] == ZEROS and not diff:
        encs[1] = NONE
    blocks = [encode(b, e) for b, e in zip((control, diff, new_mid), encs)]
    flags = sum(1 << (FLAG_BASE[i] + e) for i, e in enumerate(encs))
    lengths = [len(b) for b in blocks]
    if lengths[0] < 256 and max(lengths[1:] + [len(old), len(new)]) < 65536:
        head = b"BSDIFF4V" + struct.pack("<BBHHHHIIIH", 32, lengths[0], lengths[1], lengths[2],
                                         len(old), len(new), mode, uid, gid, flags)
    else:
        head = b"BSDIFF4U" + struct.pack("<BIQQQQQIIIH", 67, lengths[0], lengths[1], lengths[2],
                                         len(old), len(new), 0, mode, uid, gid, flags)
    return head + b"".join(blocks)


def add(tar, name, kind, data=b"", mode=0o644, uid=0, gid=0, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, 0
    info.size, info.linkname = len(data), link
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--webroot", required=True)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--from", dest="old", type=int, required=True)
    ap.add_argument("--to", type=int, required=True)
    a = ap.parse_args()
    new = manifest(a.webroot, a.to, a.bundle)
    old = manifest(a.webroot, a.old, a.bundle) if a.old else {}
    old_hashes = {h for _, h, _ in old.values()}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        add(tar, "delta/", tarfile.DIRTYPE, mode=0o700)
        add(tar, "staged/", tarfile.DIRTYPE, mode=0o700)
        done, turn = set(), 0
        for path in sorted(new):
            flags, h, v = new[path]
            if v <= a.old or h in old_hashes or h in done:
                continue
            done.add(h)
            info, data = fullfile(a.webroot, v, h)
            was = old.get(path)
            if flags[0] == "F" and was and was[0][0] == "F":
                _, old_data = fullfile(a.webroot, was[2], was[1])
                d = delta(old_data, data, 0o100000 | info.mode, info.uid, info.gid, turn)
                turn += 1
                add(tar, f"delta/{was[2]}-{v}-{was[1]}-{h}", tarfile.REGTYPE, d)
            elif flags[0] == "F":
                add(tar, f"staged/{h}", tarfile.REGTYPE, data, info.mode, info.uid, info.gid)
            elif flags[0] == "D":
                add(tar, f"staged/{h}/", tarfile.DIRTYPE, mode=info.mode, uid=info.uid, gid=info.gid)
            elif flags[0] == "L":
                add(tar, f"staged/{h}", tarfile.SYMTYPE, link=info.linkname, uid=info.uid, gid=info.gid)
    path = os.path.join(a.webroot, str(a.to), f"pack-{a.bundle}-from-{a.old}.tar")
    with open(path, "wb") as f:
        f.write(lzma.compress(out.getvalue()))


if __name__ == "__main__":
    main()
