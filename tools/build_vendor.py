"""Rebuild the report's vendored 3-D library from the npm registry (not copied by hand).

    python tools/build_vendor.py

In ``tools/vendor/``: ``npm ci`` installs the versions pinned in ``package-lock.json``
(three.js, esbuild); every package installed must carry a licence from ALLOWED (MIT,
BSD, ISC, Apache-2.0), or the build stops; esbuild bundles the parts of three.js the
report uses (``mesh3d.entry.js``) into one minified classic script (module scripts do
not load from file:// in Chromium). Output, as package data:
``dffbatch/report/assets/vendor/three-bundle.js``, three's ``LICENSE`` and
``vendor.json`` (versions, licences, the bundle's SHA-256; a test checks the bundle
against it).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "vendor")
DST = os.path.join(os.path.dirname(HERE), "dffbatch", "report", "assets", "vendor")
ALLOWED = {"MIT", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Apache-2.0"}


def main():
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=SRC, check=True)
    licences = {}
    nm = os.path.join(SRC, "node_modules")
    for root, dirs, files in os.walk(nm):
        if "package.json" in files and os.path.basename(os.path.dirname(root)) in ("node_modules", "@esbuild"):
            meta = json.load(open(os.path.join(root, "package.json")))
            licences[meta["name"]] = (meta.get("version"), meta.get("license"))
            dirs[:] = [d for d in dirs if d == "node_modules"]
    bad = {k: v for k, v in licences.items() if v[1] not in ALLOWED}
    if bad:
        sys.exit(f"licence check failed: {bad}")
    os.makedirs(DST, exist_ok=True)
    out = os.path.join(DST, "three-bundle.js")
    subprocess.run([os.path.join(nm, ".bin", "esbuild"), "mesh3d.entry.js", "--bundle", "--minify", "--format=iife",
                    "--legal-comments=eof", f"--outfile={out}"], cwd=SRC, check=True)
    shutil.copy(os.path.join(nm, "three", "LICENSE"), os.path.join(DST, "three-LICENSE"))
    digest = hashlib.sha256(open(out, "rb").read()).hexdigest()
    record = {"bundle": "three-bundle.js", "sha256": digest, "bytes": os.path.getsize(out),
              "built_from": "tools/vendor (npm ci of package-lock.json, esbuild)",
              "packages": {k: {"version": v[0], "license": v[1]} for k, v in sorted(licences.items())}}
    with open(os.path.join(DST, "vendor.json"), "w") as fh:
        json.dump(record, fh, indent=2)
        fh.write("\n")
    print(f"{out}: {record['bytes']} bytes, sha256 {digest[:16]}...; "
          + ", ".join(f"{k} {v[0]} ({v[1]})" for k, v in sorted(licences.items())))


if __name__ == "__main__":
    main()
