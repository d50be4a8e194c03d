"""Sequence mapping rules on stacks described by their headers alone (no files): vendor naming, the layouts
exports have, timing of the dynamic phases, and each way a mapping fails."""

from pathlib import Path

import numpy as np
import pytest

from readerstudy.cases.dicom.frames import Frame
from readerstudy.cases.dicom.mapping import check_mapping, propose
from readerstudy.cases.dicom.series import SeriesInfo, Stack

ORIENTATIONS = {"axial": (1, 0, 0, 0, 1, 0), "coronal": (1, 0, 0, 0, 0, -1)}


def stack(
    stack_id,
    description,
    *,
    b=None,
    time=None,
    image_type=("ORIGINAL", "PRIMARY"),
    agent="",
    options="",
    plane="axial",
    shape=(16, 16, 8),
    part=None,
    problems=(),
):
    info = SeriesInfo(
        uid=f"uid-{stack_id.split(':')[0]}",
        number=int(stack_id.split(":")[0]),
        description=description,
        protocol="",
        sequence_name="",
        image_type=tuple(image_type),
        scanning_sequence="",
        scan_options=options,
        contrast_agent=agent,
        burned_in=False,
    )
    frame = Frame(
        path=Path("x"),
        sop_uid="1",
        number=None,
        position=(0, 0, 0),
        orientation=ORIENTATIONS[plane],
        spacing=(1, 1),
        size=shape[1::-1],
        slope=1,
        intercept=0,
        time_s=time,
        trigger_ms=None,
        temporal=None,
        acquisition_number=None,
        b_value=b,
        slice_thickness=5,
    )
    return Stack(
        id=stack_id,
        series=info,
        frames=[frame],
        b_value=b,
        part=part,
        time_s=time,
        problems=list(problems),
        shape=shape,
        affine=np.diag([1.0, 1.0, 5.0, 1.0]),
    )


def diffusion(first=5, b_values=(50, 800), description="DWI"):
    return [stack(f"{first}:b{b}", description, b=b) for b in b_values] + [
        stack(f"{first + 1}", "ADC", image_type=("DERIVED", "PRIMARY", "ADC"))
    ]


def dynamic(description, delays=(0, 55, 95, 235), first=10, **kwargs):
    return [stack(str(first + n), description, time=1000 + d, **kwargs) for n, d in enumerate(delays)]


def exam(*dynamic_stacks, t2="Ax T2 FSE", dwi=None):
    return [stack("3", t2), *(dwi or diffusion()), *dynamic_stacks]


@pytest.mark.parametrize(
    ("t2", "dwi", "t1"),
    [
        ("Ax T2 SSFSE", "Ax DWI b50 b800", "Ax LAVA-Flex"),
        ("t2_haste_tra_mbh", "ep2d_diff_b50_800_tra_p2", "t1_vibe_fs_tra_bh"),
        ("T2W_SPAIR", "DWI_b0_800", "eTHRIVE_dyn"),
        ("sT2W_TSE", "sDWI", "T1W_mDIXON_dyn_W"),
        ("t2_blade_tra_fs", "resolve_b50_800", "t1_starvibe_tra"),
        ("Ax T2 PROPELLER FS", "Ax DWI", "Ax DISCO"),
    ],
)
def test_vendor_names_map_by_kind_and_timing(t2, dwi, t1):
    proposal = propose(exam(*dynamic(t1), t2=t2, dwi=diffusion(description=dwi)))
    assert not proposal.problems
    assert proposal.mapping == {
        "T2WI": "3",
        "DWI": "5:b800",
        "ADC": "6",
        "T1WI": "10",
        "LAP": "11",
        "PVP": "12",
        "DP": "13",
    }


def test_phase_names_decide_over_timing_and_are_checked_against_it():
    named = [
        stack("10", "Ax LAVA pre", time=1000),
        stack("11", "Ax LAVA art", time=1030),
        stack("12", "Ax LAVA portal", time=1070),
        stack("13", "Ax LAVA 3 min", time=1200),
    ]
    proposal = propose(exam(*named))
    assert [proposal.mapping[s] for s in ("T1WI", "LAP", "PVP", "DP")] == ["10", "11", "12", "13"]
    assert "named LAP ('art')" in proposal.reasons["LAP"] and "named T1WI" not in proposal.reasons["T1WI"]
    swapped = [
        stack("10", "Ax LAVA pre", time=1000),
        stack("11", "Ax LAVA portal", time=1030),
        stack("12", "Ax LAVA arterial", time=1070),
        stack("13", "Ax LAVA delayed", time=1200),
    ]
    problems = propose(exam(*swapped)).problems
    assert problems == [
        "PVP (series 11 'Ax LAVA portal') was acquired before LAP: the phase names contradict the acquisition times"
    ]


def test_multi_arterial_run_gives_its_last_phase_and_late_phases_are_not_delayed():
    stacks = dynamic("Ax DISCO", delays=(0, 30, 37, 44, 85, 220, 1200))
    proposal = propose(exam(*stacks))
    assert [proposal.mapping[s] for s in ("T1WI", "LAP", "PVP", "DP")] == ["10", "13", "14", "15"]
    assert proposal.notes["16"].startswith("not used")


def test_pre_contrast_is_the_stack_without_contrast_agent():
    stacks = [stack("10", "t1_vibe", time=900, agent="Gadovist"), stack("11", "t1_vibe", time=1000)]
    stacks += dynamic("t1_vibe", delays=(55, 95, 235), first=12, agent="Gadovist")
    proposal = propose(exam(*stacks))
    assert proposal.mapping["T1WI"] == "11" and "without ContrastBolusAgent" in proposal.reasons["T1WI"]
    assert proposal.notes["10"] == "passed over: acquired before or with the pre-contrast series"


def test_diffusion_takes_b800_else_the_highest_below_1000():
    proposal = propose(exam(*dynamic("vibe"), dwi=diffusion(b_values=(0, 400, 700, 1000))))
    assert proposal.mapping["DWI"] == "5:b700" and "no b = 800; the highest below 1000" in proposal.reasons["DWI"]
    assert propose(exam(*dynamic("vibe"), dwi=diffusion(b_values=(1000, 1500)))).problems == [
        "missing DWI: no b-value below 1000 s/mm² (found 1000, 1500)"
    ]
    named = [stack("5", "DWI b800"), stack("6", "eADC"), stack("7", "ep2d_diff_ADC")]
    proposal = propose(exam(*dynamic("vibe"), dwi=named))
    assert (proposal.mapping["DWI"], proposal.mapping["ADC"]) == ("5", "7")


def test_unused_kinds_are_noted():
    extras = [
        stack("1", "3-Plane Loc", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")),
        stack("20", "Ax LAVA sub", time=1300),
        stack("21", "FAT: Ax LAVA-Flex", time=1001),
        stack("22", "Ax T1 dual echo"),
        stack("23", "Ax LAVA HBP 20 min", time=2200),
        stack("24", "Cor T2 SSFSE", plane="coronal"),
    ]
    proposal = propose(exam(*dynamic("Ax LAVA-Flex"), *extras))
    assert not proposal.problems and proposal.mapping["DP"] == "13"
    assert all(proposal.notes[n].startswith("unused") for n in ("1", "20", "21", "22", "23"))
    assert proposal.notes["24"] == "passed over: not axial"


@pytest.mark.parametrize(
    ("stacks", "problem"),
    [
        (
            exam(*dynamic("vibe", delays=(0, 55, 95))),
            "missing DP: the first series 120-600 s after the first "
            "post-contrast one (post-contrast series at +55 s, +95 s after the pre-contrast)",
        ),
        (exam(*dynamic("vibe", delays=(0, 55, 235))), "missing PVP"),
        (exam(*dynamic("vibe"), dwi=diffusion()[:2]), "missing ADC: no series has ImageType ADC"),
        (exam(*dynamic("vibe"), t2="Ax FLAIR"), "missing T2WI"),
        (
            exam(*dynamic("vibe"), stack("30", "Ax T2 FSE")),
            "two or more candidates for T2WI: series 3 'Ax T2 FSE', series 30 'Ax T2 FSE'",
        ),
        (exam(*dynamic("vibe"), stack("30", "Ax LAVA", time=1095)), "two or more candidates for PVP"),
        (
            exam(*dynamic("vibe")[1:], stack("10", "vibe pre", time=1000), stack("30", "vibe pre", time=980)),
            "two or more candidates for T1WI: series 30 'vibe pre', series 10 'vibe pre' (all named pre-contrast)",
        ),
        (exam(*dynamic("vibe")[:3], stack("13", "vibe")), "no acquisition time on series 13 'vibe'"),
        (
            exam(*dynamic("vibe", delays=(0, 55, 95))[:1]),
            "missing LAP: no dynamic T1 acquisition after the pre-contrast one",
        ),
        (
            exam(*dynamic("vibe"), dwi=[stack("5", "ep2d_diff"), *diffusion()[2:]]),
            "missing DWI: diffusion series without a b-value tag",
        ),
    ],
)
def test_ambiguous_or_missing_sequences_are_problems(stacks, problem):
    problems = propose(stacks).problems
    assert any(p.startswith(problem) for p in problems), problems


def test_a_chosen_stack_with_a_geometry_problem_stops_the_exam():
    stacks = exam(*dynamic("vibe"))
    stacks[0].problems.append("mixed orientations: 2 different ImageOrientationPatient")
    assert propose(stacks).problems == [
        "T2WI: series 3 'Ax T2 FSE': mixed orientations: 2 different ImageOrientationPatient"
    ]


def test_a_confirmed_mapping_is_checked():
    stacks = exam(*dynamic("vibe"))
    mapping = propose(stacks).mapping
    assert check_mapping(stacks, mapping) == []
    assert check_mapping(stacks, {**mapping, "LAP": "10", "DP": "99", "PVP": None, "T3": "1"}) == [
        "unknown sequence(s) T3; expected T2WI, DWI, ADC, T1WI, LAP, PVP, DP",
        "LAP: series 10 is already mapped to T1WI",
        "PVP: no series chosen",
        "DP: no series '99' in this exam",
    ]
