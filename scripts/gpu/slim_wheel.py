#!/usr/bin/env python3
"""Writes a copy of a wheel without some of its files, with a RECORD that matches (docs/gpu-session.md, "Carry").

The bitsandbytes wheel (43 MB) holds one native library per CUDA and ROCm version; the GPU machine needs only the
CUDA 13.0 one (its torch is cu130) and the CPU one, about 4 MB. pip installs the copy like the original: the name,
METADATA and the kept files' hashes are unchanged; the removed files' lines leave RECORD.

  python3 scripts/gpu/slim_wheel.py IN.whl OUT_DIR --drop 'bitsandbytes/libbitsandbytes_*' --keep \
      'bitsandbytes/libbitsandbytes_cuda130.so' --keep 'bitsandbytes/libbitsandbytes_cpu.so'
"""
import argparse
import fnmatch
import os
import sys
import zipfile


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wheel")
    ap.add_argument("out_dir")
    ap.add_argument("--drop", action="append", default=[], help="glob of archive paths to leave out")
    ap.add_argument("--keep", action="append", default=[], help="glob of archive paths kept even if dropped")
    args = ap.parse_args()

    def dropped(name):
        return any(fnmatch.fnmatch(name, d) for d in args.drop) and not any(fnmatch.fnmatch(name, k) for k in args.keep)

    os.makedirs(args.out_dir, exist_ok=True)
    out = os.path.join(args.out_dir, os.path.basename(args.wheel))
    if os.path.abspath(out) == os.path.abspath(args.wheel):
        sys.exit("slim_wheel: the output would overwrite the input")
    tmp = out + ".tmp"
    kept, removed = 0, []
    with zipfile.ZipFile(args.wheel) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            name = info.filename
            if dropped(name):
                removed.append(name)
                continue
            data = zin.read(name)
            if name.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(l for l in lines if not dropped(l.split(",", 1)[0])).encode()
            zout.writestr(info, data)
            kept += 1
    if not removed:
        os.remove(tmp)
        sys.exit("slim_wheel: nothing matched --drop; refusing to write an identical copy")
    os.replace(tmp, out)
    print("slim_wheel: %s: kept %d files, left out %d (%s), %.1f MB -> %.1f MB" % (
        out, kept, len(removed), ", ".join(os.path.basename(r) for r in removed),
        os.path.getsize(args.wheel) / 1e6, os.path.getsize(out) / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
