#!/usr/bin/env python3
"""Independent swupd content generator for chainup's client tests.

Written from swupd's format description alone (docs/formats.md; no chainup code), so the client is tested against a
second implementation of the format. Turns one tree into one bundle of a release:
  OUT/<V>/Manifest.<bundle>(.tar), Manifest.MoM(.tar), Manifest.MoM.sig, format,
  OUT/<V>/files/<hash>.tar (files: none/gzip/xz by hash, dirs and symlinks: gzip),
  OUT/version/format<F>/latest(.sig), OUT/version/latest_version(.sig).
The tree should hold /usr/share/clear/bundles/<bundle> itself; nothing is added to it.
With --previous-webroot W --previous P, unchanged entries keep their version from
W/P/Manifest.<bundle> and vanished ones become deleted lines.

usage: gen_content.py --tree T --bundle os-core --version 10 --out W
                      [--previous-webroot W --previous 10] [--cert C --key K]
"""
import argparse
import gzip
import hashlib
import hmac
import io
import lzma
import os
import stat
import subprocess
import tarfile

ZERO = "0" * 64


def swupd_hash(mode, uid, gid, size, data):
    """HMAC-SHA256(hex(HMAC-SHA256(40-byte LE stat record, b"")), data)."""
    record = b"".join(v.to_bytes(8, "little") for v in (mode, uid, gid, 0, size))
    key = hmac.new(record, b"", hashlib.sha256).hexdigest().encode()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def scan(root):
    """Yields (manifest path, filesystem path, lstat) in sorted order, root excluded."""
    for name in sorted(os.listdir(root)):
        full = os.path.join(root, name)
        st = os.lstat(full)
        yield full, st
        if stat.S_ISDIR(st.st_mode):
            yield from scan(full)


def entry(full, st):
    """(type flag, hash, content bytes or link target, size for contentsize)."""
    if stat.S_ISLNK(st.st_mode):
        target = os.fsencode(os.readlink(full))
        return "L", swupd_hash(0, st.st_uid, st.st_gid, len(target), target), target, 0
    if stat.S_ISDIR(st.st_mode):
        return "D", swupd_hash(st.st_mode, st.st_uid, st.st_gid, 0, b"DIRECTORY"), b"", 0
    if stat.S_ISREG(st.st_mode):
        with open(full, "rb") as f:
            data = f.read()
        return "F", swupd_hash(st.st_mode, st.st_uid, st.st_gid, len(data), data), data, len(data)
    raise SystemExit(f"{full}: only files, directories and symlinks are supported")


def one_entry_tar(info, data, compression):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    raw = buf.getvalue()
    if compression == "gzip":
        return gzip.compress(raw, mtime=0)
    if compression == "xz":
        return lzma.compress(raw)
    return raw


def tar_info(name, flag, st, target, mtime):
    info = tarfile.TarInfo(name)
    info.uid, info.gid, info.uname, info.gname, info.mtime = st.st_uid, st.st_gid, "", "", mtime
    info.mode = stat.S_IMODE(st.st_mode)
    if flag == "L":
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.fsdecode(target), 0o777
    elif flag == "D":
        info.type = tarfile.DIRTYPE
    else:
        info.size = st.st_size
    return info


def manifest_text(fmt, version, previous, timestamp, contentsize, lines):
    lines = sorted(lines, key=lambda l: (l[2], l[3]))  # mixer order: version, then path
    head = (f"MANIFEST\t{fmt}\nversion:\t{version}\nprevious:\t{previous}\n"
            f"filecount:\t{len(lines)}\ntimestamp:\t{timestamp}\ncontentsize:\t{contentsize}\n\n")
    return (head + "".join(f"{f}\t{h}\t{v}\t{p}\n" for f, h, v, p in lines)).encode()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def manifest_tar(name, text, mtime):
    info = tarfile.TarInfo(f"Manifest.{name}")
    info.size, info.mode, info.mtime, info.uname, info.gname = len(text), 0o644, mtime, "", ""
    return one_entry_tar(info, text, "xz")


def sign(path, args):
    if args.cert:
        subprocess.run(["openssl", "smime", "-sign", "-binary", "-in", path, "-signer", args.cert,
                        "-inkey", args.key, "-outform", "DER", "-out", path + ".sig"], check=True)


def read_previous(args):
    """path -> (flags, hash, version) of the previous bundle manifest, or {}."""
    if args.previous is None:
        return {}
    with open(os.path.join(args.previous_webroot, str(args.previous),
                           f"Manifest.{args.bundle}"), encoding="utf-8") as f:
        body = f.read().split("\n\n", 1)[1]
    return {p: (fl, h, int(v)) for fl, h, v, p in
            (line.split("\t", 3) for line in body.splitlines())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", required=True)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--version", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--previous-webroot")
    ap.add_argument("--previous", type=int)
    ap.add_argument("--format", type=int, default=30)
    ap.add_argument("--timestamp", type=int, default=1700000000)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    args = ap.parse_args()
    if (args.previous is None) != (args.previous_webroot is None) or bool(args.cert) != bool(args.key):
        ap.error("--previous goes with --previous-webroot, --cert with --key")
    v, vdir = args.version, os.path.join(args.out, str(args.version))
    old = read_previous(args)

    lines, contentsize, seen = [], 0, set()
    for full, st in scan(args.tree):
        path = "/" + os.path.relpath(full, args.tree)
        flag, h, data, size = entry(full, st)
        contentsize += size
        seen.add(path)
        prev = old.get(path)
        if prev and prev[0][1] == "." and prev[0][0] == flag and prev[1] == h:
            lines.append((f"{flag}...", h, prev[2], path))
            continue
        lines.append((f"{flag}...", h, v, path))
        ff = os.path.join(vdir, "files", h + ".tar")
        if not os.path.exists(ff):
            compression = "gzip" if flag != "F" else ("none", "gzip", "xz")[int(h[0], 16) % 3]
            write(ff, one_entry_tar(tar_info(h, flag, st, data, args.timestamp), data, compression))
    for path, (flags, h, version) in old.items():
        if path not in seen:
            deleted = flags[1] != "."  # already deleted: carried over as it was
            lines.append((flags, h, version, path) if deleted else (".d..", ZERO, v, path))

    previous = args.previous or 0
    text = manifest_text(args.format, v, previous, args.timestamp, contentsize, lines)
    write(os.path.join(vdir, f"Manifest.{args.bundle}"), text)
    write(os.path.join(vdir, f"Manifest.{args.bundle}.tar"), manifest_tar(args.bundle, text, args.timestamp))
    mhash = swupd_hash(0o100644, 0, 0, len(text), text)  # as extracted from its tar
    mom = manifest_text(args.format, v, previous, args.timestamp, 0, [("M...", mhash, v, args.bundle)])
    write(os.path.join(vdir, "Manifest.MoM"), mom)
    write(os.path.join(vdir, "Manifest.MoM.tar"), manifest_tar("MoM", mom, args.timestamp))
    sign(os.path.join(vdir, "Manifest.MoM"), args)
    write(os.path.join(vdir, "format"), f"{args.format}\n".encode())
    for pointer in (f"version/format{args.format}/latest", "version/latest_version"):
        write(os.path.join(args.out, pointer), f"{v}\n".encode())
        sign(os.path.join(args.out, pointer), args)


if __name__ == "__main__":
    main()
