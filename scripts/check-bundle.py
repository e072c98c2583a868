#!/usr/bin/env python3
"""Checks the browser bundle the way the browser will load it, before any browser does.

wasm-bindgen's JS grows the exported table `__wbindgen_externrefs` at start. A bundle in
which that export names a table that is not an externref table, or one that cannot grow
(Debian's binaryen 108 rewrites the export to the fixed-size function table), throws
"WebAssembly.Table.grow(): failed to grow table" on every page and never hydrates.
Prints the bundle's size raw and gzipped; exits non-zero on a broken bundle.
"""
import gzip
import sys


def leb(b, i):
    result = shift = 0
    while True:
        byte = b[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, i


def name(b, i):
    n, i = leb(b, i)
    return b[i:i + n].decode(), i + n


def limits(b, i):
    flags = b[i]
    i += 1
    low, i = leb(b, i)
    high = None
    if flags & 1:
        high, i = leb(b, i)
    return low, high, i


def tables_and_exports(b):
    tables, exports = [], {}
    i = 8
    while i < len(b):
        section = b[i]
        i += 1
        size, i = leb(b, i)
        end = i + size
        j = i
        if section == 2:  # imports
            n, j = leb(b, j)
            for _ in range(n):
                _, j = name(b, j)
                _, j = name(b, j)
                kind = b[j]
                j += 1
                if kind == 0:
                    _, j = leb(b, j)
                elif kind == 1:
                    elem = b[j]
                    low, high, j = limits(b, j + 1)
                    tables.append((elem, low, high))
                elif kind == 2:
                    _, _, j = limits(b, j)
                elif kind == 3:
                    j += 2
                else:
                    j += 1
        elif section == 4:  # tables
            n, j = leb(b, j)
            for _ in range(n):
                elem = b[j]
                low, high, j = limits(b, j + 1)
                tables.append((elem, low, high))
        elif section == 7:  # exports
            n, j = leb(b, j)
            for _ in range(n):
                export, j = name(b, j)
                kind = b[j]
                index, j = leb(b, j + 1)
                if kind == 1:
                    exports[export] = index
        i = end
    return tables, exports


def main(path):
    b = open(path, "rb").read()
    if b[:4] != b"\0asm":
        sys.exit(f"{path}: not a WebAssembly module")
    tables, exports = tables_and_exports(b)
    raw, packed = len(b), len(gzip.compress(b, 9))
    print(f"{path}: {raw} bytes raw, {packed} bytes gzipped")
    index = exports.get("__wbindgen_externrefs")
    if index is None:
        print("no externref table exported (wasm-bindgen without reference types)")
        return
    elem, low, high = tables[index]
    if elem != 0x6F:
        sys.exit(
            f"{path}: __wbindgen_externrefs names table {index}, a {'funcref' if elem == 0x70 else hex(elem)} "
            f"table ({low}/{high}), not the externref table: the page would throw "
            "'WebAssembly.Table.grow(): failed to grow table' and never hydrate"
        )
    if high is not None and high <= low:
        sys.exit(f"{path}: the externref table cannot grow ({low}/{high})")
    print(f"externref table {index}: {low} entries, growable")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/site/pkg/portcullis.wasm")
