"""DICOM exams written from phantom cases, the way the three vendors of docs/paper.md export them.

- **GE** (Signa): classic files; T2 "Ax T2 FRFSE FS" and a coronal "Cor T2 SSFSE"; one DWI series with b 50
  and 800 (b-values in GE's private tag only); an ADC series; all four dynamic phases in one LAVA-Flex
  multi-phase series told apart by TriggerTime; masks as DICOM SEG on the DWI and the dynamic phases (each
  on part of a series), as NIfTI in ``masks/<lesion>/<SEQ>.nii.gz`` for T2WI and ADC.
- **Siemens** (TrioTim): classic files; "t2_haste_tra" and the fat-suppressed "t2_tse_fs_tra"; DWI b 50 and
  800 (Siemens' private tag) with ImageType TRACEW; ADC; four "t1_vibe_fs_tra_bh" series, same name, told
  apart by AcquisitionTime only; masks as DICOM SEG.
- **Philips** (Ingenia): enhanced multi-frame files; "T2W_SPAIR"; DWI b 0 and 800 in one file; "dADC";
  "eTHRIVE_pre" and the three post-contrast phases in one "eTHRIVE_dyn" file (TemporalPositionIndex);
  masks as DICOM SEG on the single-volume files (T2WI, ADC, T1WI), NIfTI for the others (highdicom writes
  no SEG on a file whose frames repeat positions).

Every header carries identifiers (name, id, birth date, accession, institution, physician, station, serial
number, UIDs) for the de-identification test to look for.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pydicom.valuerep import DSfloat

from inference.domain import SEQUENCES
from inference.manifest import MANIFEST_NAME

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
UID_ROOT = "1.2.826.0.1.3680043.10.999."
STUDY_DATE = "20240301"
PHASE_DELAYS_S = {"T1WI": 0.0, "LAP": 55.0, "PVP": 95.0, "DP": 235.0}
"""Start of each dynamic phase after the pre-contrast one (s): arterial, then 40 s and 180 s later."""
logging.getLogger("highdicom").setLevel(logging.WARNING)  # it logs every attribute it copies
MANUFACTURERS = {
    "GE": ("GE MEDICAL SYSTEMS", "Signa", "1.5"),
    "Siemens": ("SIEMENS", "TrioTim", "3"),
    "Philips": ("Philips Medical Systems", "Ingenia", "3"),
}


@dataclass
class Identity:
    """The identifying values written into every header of one exam."""

    tag: str
    age: int
    sex: str

    @property
    def values(self) -> dict[str, str]:
        born = f"{int(STUDY_DATE[:4]) - self.age - 1}0512"  # the birthday falls after the study date
        return {
            "PatientName": f"Doe{self.tag}^Jane",
            "PatientID": f"MRN-{self.tag}-4711",
            "PatientBirthDate": born,
            "AccessionNumber": f"ACC{self.tag}998877",
            "InstitutionName": f"St {self.tag} Hospital",
            "ReferringPhysicianName": f"Who{self.tag}^Doctor",
            "StationName": f"MR{self.tag}EAST",
            "DeviceSerialNumber": f"SN{self.tag}555123",
            "StudyID": f"SID{self.tag}31",
            "StudyDate": STUDY_DATE,
            "OperatorsName": f"Tech{self.tag}^Ann",
        }

    @property
    def secrets(self) -> list[str]:
        """The identifying strings no stored byte may contain (the birth date also as ISO)."""
        values = self.values
        born = values["PatientBirthDate"]
        return [v for k, v in values.items() if k != "StudyDate"] + [f"{born[:4]}-{born[4:6]}-{born[6:]}", "Doe"]


@dataclass
class WrittenExam:
    """What was written: the study's UIDs and the stack ids the mapping should choose."""

    folder: Path
    study_uid: str
    identity: Identity
    vendor: str
    expected: dict[str, str]
    series_uids: dict[str, str] = field(default_factory=dict)

    @property
    def secrets(self) -> list[str]:
        return self.identity.secrets + [self.study_uid, *self.series_uids.values()]


def _ds(value: float) -> DSfloat:
    return DSfloat(value, auto_format=True)


def plane(affine: np.ndarray, k: int) -> tuple[list, list, list]:
    """ImagePositionPatient of slice k, ImageOrientationPatient and PixelSpacing of a RAS+ NIfTI affine."""
    lps = RAS_TO_LPS @ affine
    u_i, u_j = lps[:3, 0], lps[:3, 1]
    position = lps[:3, 3] + k * lps[:3, 2]
    orientation = [*(u_i / np.linalg.norm(u_i)), *(u_j / np.linalg.norm(u_j))]
    spacing = [np.linalg.norm(u_j), np.linalg.norm(u_i)]
    return [_ds(v) for v in position], [_ds(v) for v in orientation], [_ds(v) for v in spacing]


def _time(seconds: float) -> str:
    """TM of ``seconds`` after 10:00:00."""
    seconds += 36000
    return f"{int(seconds // 3600):02d}{int(seconds % 3600 // 60):02d}{seconds % 60:09.6f}"


class ExamWriter:
    """Writes one exam's series as DICOM files under ``folder``."""

    def __init__(self, folder: Path, vendor: str, identity: Identity, study_uid: str | None = None):
        self.folder, self.vendor, self.identity = folder, vendor, identity
        self.study_uid = study_uid or generate_uid(UID_ROOT)
        self.frame_of_reference = generate_uid(UID_ROOT)
        self.series_uids: dict[str, str] = {}
        self.written: dict[str, list[Dataset]] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def base(self, number: int, description: str, image_type=("ORIGINAL", "PRIMARY", "M")) -> Dataset:
        manufacturer, model, field_t = MANUFACTURERS[self.vendor]
        ds = Dataset()
        for keyword, value in self.identity.values.items():
            setattr(ds, keyword, value)
        ds.PatientAge, ds.PatientSex = f"{self.identity.age:03d}Y", self.identity.sex
        ds.StudyInstanceUID = self.study_uid
        ds.SeriesInstanceUID = self.series_uids.setdefault(f"{number}", generate_uid(UID_ROOT))
        ds.FrameOfReferenceUID = self.frame_of_reference
        ds.Modality, ds.SeriesNumber, ds.SeriesDescription, ds.ProtocolName = "MR", number, description, description
        ds.Manufacturer, ds.ManufacturerModelName, ds.MagneticFieldStrength = manufacturer, model, field_t
        ds.ImageType = list(image_type)
        ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = STUDY_DATE
        ds.StudyTime = ds.SeriesTime = "100000"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PatientPosition = "FFS"
        return ds

    def save(self, ds: Dataset, name: str, sop_class=MRImageStorage) -> Path:
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid(UID_ROOT)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        self.written.setdefault(str(ds.SeriesNumber), []).append(ds)
        return path

    def classic(
        self,
        number: int,
        description: str,
        volume: nib.Nifti1Image,
        *,
        time_s=0.0,
        extra=None,
        image_type=("ORIGINAL", "PRIMARY", "M"),
        first_instance=1,
        slices=None,
    ) -> None:
        """One file per slice; ``extra(ds, k)`` adds vendor tags; ``slices`` limits which slices are written."""
        data = np.asarray(volume.dataobj).astype(np.int16)
        for k in slices if slices is not None else range(data.shape[2]):
            ds = self.base(number, description, image_type)
            ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing = plane(volume.affine, k)
            ds.SliceThickness = _ds(np.linalg.norm(volume.affine[:3, 2]))
            ds.Rows, ds.Columns = data.shape[1], data.shape[0]
            ds.AcquisitionTime = ds.ContentTime = _time(time_s)
            ds.InstanceNumber = first_instance + k
            ds.PixelData = np.ascontiguousarray(data[:, :, k].T).tobytes()
            if extra:
                extra(ds, k)
            self.save(ds, f"{number:03d}/{first_instance + k:04d}.dcm")

    def enhanced(
        self,
        number: int,
        description: str,
        volumes: list[tuple[nib.Nifti1Image, dict]],
        image_type=("ORIGINAL", "PRIMARY", "M", "NONE"),
    ) -> None:
        """One enhanced MR file holding every slice of every (volume, per-frame extras) pair."""
        from pydicom.uid import EnhancedMRImageStorage

        ds = self.base(number, description, image_type)
        first = volumes[0][0]
        ds.Rows, ds.Columns = first.shape[1], first.shape[0]
        shared = Dataset()
        measures = Dataset()
        _, _, measures.PixelSpacing = plane(first.affine, 0)
        measures.SliceThickness = _ds(np.linalg.norm(first.affine[:3, 2]))
        orientation = Dataset()
        _, orientation.ImageOrientationPatient, _ = plane(first.affine, 0)
        shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([measures]), Sequence([orientation])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        frames, pixels = [], []
        for volume, extras in volumes:
            data = np.asarray(volume.dataobj).astype(np.int16)
            for k in range(data.shape[2]):
                groups = Dataset()
                position = Dataset()
                position.ImagePositionPatient, _, _ = plane(volume.affine, k)
                content = Dataset()
                content.FrameAcquisitionDateTime = STUDY_DATE + _time(extras.get("time_s", 0.0))
                if "temporal" in extras:
                    content.TemporalPositionIndex = extras["temporal"]
                groups.PlanePositionSequence, groups.FrameContentSequence = Sequence([position]), Sequence([content])
                if "b_value" in extras:
                    diffusion = Dataset()
                    diffusion.DiffusionBValue = extras["b_value"]
                    groups.MRDiffusionSequence = Sequence([diffusion])
                frames.append(groups)
                pixels.append(np.ascontiguousarray(data[:, :, k].T))
        ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
        ds.NumberOfFrames = len(frames)
        ds.InstanceNumber = 1
        ds.PixelData = np.stack(pixels).tobytes()
        self.save(ds, f"{number:03d}/0001.dcm", sop_class=EnhancedMRImageStorage)

    def segmentation(self, number: int, sources: list[Dataset], masks: dict[str, np.ndarray]) -> None:
        """A DICOM SEG on ``sources`` (classic files of one volume, or one enhanced file holding one volume):
        one segment per lesion, labelled with the lesion name; each mask is (i, j, k) on that volume's grid."""
        category = hd.sr.CodedConcept("M-01000", "SRT", "Morphologically Altered Structure")
        descriptions = [
            hd.seg.SegmentDescription(
                segment_number=n,
                segment_label=name,
                segmented_property_category=category,
                segmented_property_type=category,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            )
            for n, name in enumerate(masks, start=1)
        ]
        stacked = np.stack([m.transpose(2, 1, 0) for m in masks.values()], axis=-1).astype(np.uint8)
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=stacked,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=generate_uid(UID_ROOT),
            series_number=number,
            sop_instance_uid=generate_uid(UID_ROOT),
            instance_number=1,
            manufacturer="LiverRead tests",
            manufacturer_model_name="builder",
            software_versions="1",
            device_serial_number="0",
        )
        seg.save_as(self.folder / f"seg{number:03d}.dcm")

    def masks(self, case_dir: Path, seg: dict[str, list[Dataset]]) -> None:
        """Each lesion's masks: a SEG per sequence in ``seg`` (its source files), NIfTI beside the series
        (``masks/<lesion>/<SEQ>.nii.gz``) for the others."""
        for sequence in SEQUENCES:
            if sequence in seg:
                self.segmentation(90 + SEQUENCES.index(sequence), seg[sequence], masks_of(case_dir, sequence))
                continue
            for lesion in lesions_of(case_dir):
                (self.folder / "masks" / lesion).mkdir(parents=True, exist_ok=True)
                nib.save(_load(case_dir, sequence, lesion), self.folder / "masks" / lesion / f"{sequence}.nii.gz")

    def files(self, number: int, first: int = 0, last: int = 10**6) -> list[Dataset]:
        """The datasets written for series ``number`` with InstanceNumber in [first, last]."""
        return [ds for ds in self.written[str(number)] if first <= ds.InstanceNumber <= last]


def _load(case_dir: Path, sequence: str, lesion: str | None = None) -> nib.Nifti1Image:
    folder = case_dir if lesion is None else case_dir / "masks" / lesion
    return nib.load(folder / f"{sequence}.nii.gz")


def _scaled(image: nib.Nifti1Image, factor: float) -> nib.Nifti1Image:
    return nib.Nifti1Image((np.asarray(image.dataobj) * factor).astype(np.int16), image.affine)


def _coronal(image: nib.Nifti1Image) -> nib.Nifti1Image:
    """The same voxels declared on a coronal grid (rows run foot-wards, slices front to back)."""
    affine = image.affine.copy()
    affine[:3, 1], affine[:3, 2] = -image.affine[:3, 2], image.affine[:3, 1]
    return nib.Nifti1Image(np.asarray(image.dataobj), affine)


def lesions_of(case_dir: Path) -> list[str]:
    return sorted(p.name for p in (case_dir / "masks").iterdir())


def masks_of(case_dir: Path, sequence: str) -> dict[str, np.ndarray]:
    return {lesion: np.asarray(_load(case_dir, sequence, lesion).dataobj) for lesion in lesions_of(case_dir)}


def write_ge(case_dir: Path, folder: Path, identity: Identity, *, phases=SEQUENCES[3:]) -> WrittenExam:
    writer = ExamWriter(folder, "GE", identity)
    writer.classic(3, "Ax T2 FRFSE FS", _load(case_dir, "T2WI"))
    writer.classic(4, "Cor T2 SSFSE", _coronal(_load(case_dir, "T2WI")))

    def b_tag(b: int):
        def extra(ds, k):
            ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
            ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x39, "IS", [1000000000 + b, 8, 0, 0])

        return extra

    dwi = _load(case_dir, "DWI")
    writer.classic(5, "Ax DWI b50,800", _scaled(dwi, 1.6), extra=b_tag(50))
    writer.classic(5, "Ax DWI b50,800", dwi, extra=b_tag(800), first_instance=101)
    writer.classic(500, "ADC (10^-6 mm²/s)", _load(case_dir, "ADC"), image_type=("DERIVED", "PRIMARY", "ADC"))
    for n, sequence in enumerate(phases):

        def trigger(ds, k, delay=PHASE_DELAYS_S[sequence], n=n):
            ds.TriggerTime = _ds(delay * 1000)
            ds.TemporalPositionIdentifier = n + 1

        writer.classic(7, "Ax LAVA-Flex MPh", _load(case_dir, sequence), extra=trigger, first_instance=100 * n + 1)
    writer.masks(
        case_dir,
        {"DWI": writer.files(5, 101), **{s: writer.files(7, 100 * n + 1, 100 * n + 99) for n, s in enumerate(phases)}},
    )
    expected = {"T2WI": "3", "DWI": "5:b800", "ADC": "500", "T1WI": "7:t1", "LAP": "7:t2", "PVP": "7:t3", "DP": "7:t4"}
    return WrittenExam(folder, writer.study_uid, identity, "GE", expected, writer.series_uids)


def write_siemens(
    case_dir: Path, folder: Path, identity: Identity, *, t1_description="t1_vibe_fs_tra_bh", delays=PHASE_DELAYS_S
) -> WrittenExam:
    writer = ExamWriter(folder, "Siemens", identity)
    writer.classic(2, "t2_haste_tra", _load(case_dir, "T2WI"))
    writer.classic(3, "t2_tse_fs_tra", _load(case_dir, "T2WI"))

    def b_tag(b: int):
        def extra(ds, k):
            ds.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW", "ND"]
            ds.private_block(0x0019, "SIEMENS CSA HEADER", create=True).add_new(0x0C, "IS", b)
            ds.SequenceName = f"*ep_b{b}t"

        return extra

    dwi = _load(case_dir, "DWI")
    writer.classic(6, "ep2d_diff_b50_800_tra", _scaled(dwi, 1.6), extra=b_tag(50))
    writer.classic(6, "ep2d_diff_b50_800_tra", dwi, extra=b_tag(800), first_instance=101)
    writer.classic(
        7,
        "ep2d_diff_b50_800_tra_ADC",
        _load(case_dir, "ADC"),
        image_type=("DERIVED", "PRIMARY", "DIFFUSION", "ADC", "ND"),
    )
    for n, (sequence, delay) in enumerate(delays.items()):

        def agent(ds, k, post=n > 0):
            if post:
                ds.ContrastBolusAgent = "Dotarem"

        writer.classic(10 + n, t1_description, _load(case_dir, sequence), time_s=600 + delay, extra=agent)
    numbers = {"T2WI": 3, "ADC": 7, "T1WI": 10, "LAP": 11, "PVP": 12, "DP": 13}
    writer.masks(case_dir, {"DWI": writer.files(6, 101), **{s: writer.files(n) for s, n in numbers.items()}})
    expected = {"T2WI": "3", "DWI": "6:b800", "ADC": "7", "T1WI": "10", "LAP": "11", "PVP": "12", "DP": "13"}
    return WrittenExam(folder, writer.study_uid, identity, "Siemens", expected, writer.series_uids)


def write_philips(case_dir: Path, folder: Path, identity: Identity) -> WrittenExam:
    writer = ExamWriter(folder, "Philips", identity)
    writer.enhanced(401, "T2W_SPAIR", [(_load(case_dir, "T2WI"), {})])
    dwi = _load(case_dir, "DWI")
    writer.enhanced(501, "DWI_b0_800", [(_scaled(dwi, 2.0), {"b_value": 0}), (dwi, {"b_value": 800})])
    writer.enhanced(502, "dADC", [(_load(case_dir, "ADC"), {})], image_type=("DERIVED", "PRIMARY", "ADC", "ADC"))
    writer.enhanced(601, "eTHRIVE_pre", [(_load(case_dir, "T1WI"), {"time_s": 900})])
    post = [
        (_load(case_dir, s), {"time_s": 900 + PHASE_DELAYS_S[s], "temporal": n + 1})
        for n, s in enumerate(("LAP", "PVP", "DP"))
    ]
    writer.enhanced(701, "eTHRIVE_dyn", post)
    writer.masks(case_dir, {"T2WI": writer.files(401), "ADC": writer.files(502), "T1WI": writer.files(601)})
    expected = {
        "T2WI": "401",
        "DWI": "501:b800",
        "ADC": "502",
        "T1WI": "601",
        "LAP": "701:t1",
        "PVP": "701:t2",
        "DP": "701:t3",
    }
    return WrittenExam(folder, writer.study_uid, identity, "Philips", expected, writer.series_uids)


WRITERS = {"GE": write_ge, "Siemens": write_siemens, "Philips": write_philips}


def phantom_rows(cohort: Path) -> dict[str, list[dict]]:
    """The phantom cohort's manifest rows by case."""
    with (cohort / MANIFEST_NAME).open(newline="") as handle:
        rows: dict[str, list[dict]] = {}
        for row in csv.DictReader(handle):
            rows.setdefault(row["case"], []).append(row)
        return rows


def write_labels(path: Path, exams: list[tuple[WrittenExam, list[dict]]], study_key="study_uid") -> Path:
    """labels.csv for the exams, one row per phantom lesion; exams identified by StudyInstanceUID or
    AccessionNumber (``study_key`` "accession")."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["study", "lesion", "label", "diameter_mm", "split", "cirrhosis", "fatty_liver"])
        for exam, rows in exams:
            study = exam.study_uid if study_key == "study_uid" else exam.identity.values["AccessionNumber"]
            for row in rows:
                writer.writerow(
                    [
                        study,
                        row["lesion"],
                        row["label"],
                        row["diameter_mm"],
                        row["split"],
                        row["cirrhosis"],
                        row["fatty_liver"],
                    ]
                )
    return path


PHANTOM_CASES = {"GE": "C0001", "Siemens": "C0002", "Philips": "C0003"}
"""The phantom cohort's first three exams happen to come from the three vendors' scanners."""
_SHARED: dict[str, Path] = {}


def phantom_cohort(tmp_path_factory) -> Path:
    """Seven phantom lesions on coarse grids (made once per session); cases C0001-C0003 are GE, Siemens and
    Philips exams."""
    from inference.phantoms import make_cohort

    if "cohort" not in _SHARED:
        _SHARED["cohort"] = tmp_path_factory.mktemp("dicom-cohort") / "data"
        make_cohort(_SHARED["cohort"], lesions_per_class=1, matrix_scale=0.15, seed=5)
    return _SHARED["cohort"]


def write_vendor_exams(root: Path, cohort: Path, vendors=tuple(WRITERS)) -> dict[str, WrittenExam]:
    """The phantom cases of ``vendors`` as DICOM exams, each in a folder named after the patient (as PACS
    exports do), with the phantom's age and sex in the headers."""
    rows = phantom_rows(cohort)
    exams = {}
    for vendor in vendors:
        case = PHANTOM_CASES[vendor]
        first = rows[case][0]
        identity = Identity(vendor.upper()[:2], int(first["age"]), first["sex"])
        exams[vendor] = WRITERS[vendor](cohort / case, root / f"DOE{identity.tag}_JANE", identity)
    return exams


def labels_for(path: Path, cohort: Path, exams: dict[str, WrittenExam], study_key="study_uid") -> Path:
    rows = phantom_rows(cohort)
    return write_labels(path, [(exam, rows[PHANTOM_CASES[v]]) for v, exam in exams.items()], study_key)
