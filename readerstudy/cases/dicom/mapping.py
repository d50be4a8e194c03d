"""Which stack of an exam is which of the seven sequences: the rules, a proposal with a reason per
sequence, and the check of a mapping an admin confirmed or corrected.

Each stack is first sorted into one kind by its headers (SeriesDescription + ProtocolName + SequenceName,
lower-cased, and ImageType), in this order:

1. **unused**: localizers, subtractions, reformats (MPR/MIP), Dixon fat / in-phase / opposed-phase images,
   hepatobiliary phases, and stacks no rule matches;
2. **ADC**: ImageType ADC, or "adc"/"apparent" in the text (not Philips' exponential "eADC");
3. **DWI**: a b-value (DiffusionBValue, GE/Siemens/Philips private tags, or one "b800" in the text), or
   ImageType DIFFUSION/TRACEW, or "dwi", "diff", "ep2d", "resolve" in the text;
4. **dynamic T1**: "lava", "vibe", "thrive", "disco", "twist", "dyn", "fl3d", "3d gre", "fame", "quick3d",
   or "t1" without "tse"/"fse" (2-D dual-echo in/opposed-phase T1 is unused);
5. **T2**: "t2", "haste", "ssfse", "fse"/"tse", "propeller", "blade", "multivane", "ssh", "space"
   (not T2*, MRCP).

Then per sequence, among its kind: axial stacks first (a chosen stack's geometry problem stops the exam).
T2WI prefers fat-suppressed ("fs", "fat sat", "spair", "spir", "stir", or ScanOptions FS/SFS); DWI takes
b = 800, else the highest b below 1000; ADC prefers the stack on the chosen DWI's grid. The dynamic T1
stacks are ordered by acquisition time: T1WI is the one named pre-contrast ("pre", "nativ", "mask", ...),
else the earliest without ContrastBolusAgent where others have it, else the earliest. After it, phase names
("arterial", "portal", "delayed", ...) assign their phase; the rest go by time after the first
post-contrast stack: LAP is the last of the arterial run (stacks starting within ARTERIAL_RUN_S of the one
before), PVP the next stack, DP the first at least DELAYED_AFTER_S after the first post-contrast stack
(and at most LATEST_DP_S). Two stacks left for one sequence, or none, stop the exam with a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from inference.domain import SEQUENCES
from readerstudy.cases.dicom.series import Stack

ARTERIAL_RUN_S = 15.0
"""Post-contrast stacks starting this close (s) to the previous one belong to one multi-arterial run."""
DELAYED_AFTER_S = 120.0
"""The delayed phase starts at least this long (s) after the first post-contrast stack (3-5 min after
injection; the portal venous phase comes 60-70 s after injection, about 40 s after the arterial one)."""
LATEST_DP_S = 600.0
"""Later stacks (s after the first post-contrast one) are hepatobiliary or other late phases, not DP."""
SAME_TIME_S = 2.0
"""Two stacks starting this close (s) are two versions of one acquisition."""
NOT_CHOSEN = "no series chosen"
TARGET_B = 800.0
MAX_B = 1000.0

UNUSED_TYPES = {
    "LOCALIZER",
    "SUBTRACT",
    "MPR",
    "REFORMATTED",
    "MIP",
    "PROJECTION IMAGE",
    "FAT",
    "IN_PHASE",
    "OUT_PHASE",
    "OPP_PHASE",
    "F",
    "IP",
    "OP",
}
UNUSED = re.compile(
    r"loc(aliz|aliser|alizer)?\b|scout|survey|3[ -]?pl(ane)?|\bsub(traction)?\b|_sub\b|\bmpr\b|\bmip\b|reformat"
    r"|^(fat|in ?phase|out ?phase|opp ?phase)\s*:|[_ ](f|fat|ip|op|in|opp|out)$"
    r"|hbp|hepatobil|\b(1[0-9]|20) ?min"
)
ADC = re.compile(r"(?<!e)adc|apparent")
EXPONENTIAL_ADC = re.compile(r"eadc|exp")
DWI = re.compile(r"dwi|diff|ep2d|resolve")
B_IN_TEXT = re.compile(r"(?<![a-z0-9])b[ =_-]?(\d{2,4})(?!\d)")
DYNAMIC = re.compile(r"lava|vibe|thrive|disco|twist|dyn|fl3d|3d ?gre|fame|quick ?3d|(?<![a-z])t1(?!.*(tse|fse))")
DUAL_ECHO = re.compile(r"dual|opp|in[-_ ]?out|fl2d|2d")
T2 = re.compile(r"t2|haste|ssfse|fse|tse|propeller|blade|multivane|(?<![a-z])ssh|space")
NOT_T2 = re.compile(r"t2\*|t2star|mrcp|cholangio|mege|swi")
FAT_SUPPRESSED = re.compile(r"(?<![a-z])(fs|fat ?sat|fatsat|spair|spir|stir)(?![a-z])")
PHASE_NAMES = {
    "T1WI": re.compile(r"(?<![a-z])pre|nativ|mask|plain|non ?contrast|unenh"),
    "LAP": re.compile(r"arter|(?<![a-z])(art|ap|lap|hap)(?![a-z])"),
    "PVP": re.compile(r"portal|venous|(?<![a-z])(pv|pvp|ven)(?![a-z])"),
    "DP": re.compile(r"delay|equilib|transitional|(?<![a-z])(del|dp|tp)(?![a-z])|(?<![0-9])[2-5] ?min"),
}
DYNAMIC_SEQUENCES = ("T1WI", "LAP", "PVP", "DP")


@dataclass
class Proposal:
    """A mapping (sequence → stack id, None where no stack fits) with a reason per chosen sequence,
    the problems that stop the exam, and a note per stack left unused."""

    mapping: dict[str, str | None]
    reasons: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)


def text(stack: Stack) -> str:
    series = stack.series
    return " ".join((series.description, series.protocol, series.sequence_name)).lower()


def b_value(stack: Stack) -> float | None:
    """The stack's b-value from its frames, else the single b-value named in its text."""
    if stack.b_value is not None:
        return stack.b_value
    named = set(B_IN_TEXT.findall(text(stack)))
    return float(named.pop()) if len(named) == 1 else None


def kind(stack: Stack) -> tuple[str, str]:
    """The stack's kind (unused, ADC, DWI, dynamic, T2) and the rule that decided it."""
    words, types = text(stack), set(stack.series.image_type)
    if types & UNUSED_TYPES or UNUSED.search(words):
        return "unused", "localizer, subtraction, reformat, Dixon fat/in/opposed-phase or hepatobiliary image"
    if ("ADC" in types or ADC.search(words)) and not EXPONENTIAL_ADC.search(words):
        return "ADC", "ImageType ADC" if "ADC" in types else "'adc' in the description"
    if stack.b_value is not None or types & {"DIFFUSION", "TRACEW"} or DWI.search(words):
        return "DWI", "diffusion b-value tag" if stack.b_value is not None else "diffusion in ImageType/description"
    if DYNAMIC.search(words):
        if DUAL_ECHO.search(words):
            return "unused", "2-D dual-echo (in/opposed-phase) T1, not the dynamic series"
        return "dynamic", f"dynamic T1 ({DYNAMIC.search(words).group(0)!r} in the description)"
    if T2.search(words) and not NOT_T2.search(words):
        return "T2", f"T2-weighted ({T2.search(words).group(0)!r} in the description)"
    return "unused", "no rule matches its description"


def _prefer(candidates: list[Stack], test, why: str, notes: dict[str, str]) -> list[Stack]:
    """Keep the candidates passing ``test`` when some do; note the others as passed over."""
    kept = [s for s in candidates if test(s)]
    if not kept or len(kept) == len(candidates):
        return candidates
    for stack in candidates:
        if stack not in kept:
            notes[stack.id] = f"passed over: {why}"
    return kept


def _axial(candidates: list[Stack], notes: dict[str, str]) -> list[Stack]:
    return _prefer(candidates, lambda s: s.plane == "axial", "not axial", notes)


def _listing(stacks: list[Stack]) -> str:
    return ", ".join(s.label for s in stacks)


class _Builder:
    def __init__(self, stacks: list[Stack]):
        self.proposal = Proposal(mapping=dict.fromkeys(SEQUENCES))
        self.kinds: dict[str, list[Stack]] = {}
        for stack in stacks:
            name, why = kind(stack)
            self.kinds.setdefault(name, []).append(stack)
            if name == "unused":
                self.proposal.notes[stack.id] = f"unused: {why}"

    def choose(self, sequence: str, candidates: list[Stack], reason: str, tied_on: str) -> Stack | None:
        """Map ``sequence`` to the one candidate left, or record that there are none or several."""
        if len(candidates) > 1:
            self.proposal.problems.append(
                f"two or more candidates for {sequence}: {_listing(candidates)} ({tied_on}); choose one in the mapping"
            )
            return None
        if not candidates:
            return None
        stack = candidates[0]
        self.proposal.mapping[sequence] = stack.id
        self.proposal.reasons[sequence] = f"{stack.label}: {reason}"
        self.proposal.notes.pop(stack.id, None)
        return stack

    def missing(self, sequence: str, why: str) -> None:
        self.proposal.problems.append(f"missing {sequence}: {why}")

    def t2(self) -> None:
        notes = self.proposal.notes
        candidates = _axial(self.kinds.get("T2", []), notes)
        candidates = _prefer(candidates, _fat_suppressed, "not fat-suppressed", notes)
        if not candidates:
            return self.missing("T2WI", "no series is named like a T2-weighted one (t2, haste, ssfse, fse, tse, ...)")
        reason = f"{kind(candidates[0])[1]}, {candidates[0].plane}" + (
            ", fat-suppressed" if _fat_suppressed(candidates[0]) else ""
        )
        self.choose("T2WI", candidates, reason, "all axial T2 with the same fat suppression")

    def dwi(self) -> Stack | None:
        stacks = self.kinds.get("DWI", [])
        known = [s for s in stacks if b_value(s) is not None and b_value(s) > 0]
        if not known:
            why = "diffusion series without a b-value tag or a b-value in the name" if stacks else "no diffusion series"
            return self.missing("DWI", why)
        below = [s for s in known if b_value(s) < MAX_B]
        if not below:
            shown = ", ".join(f"{b_value(s):g}" for s in known)
            return self.missing("DWI", f"no b-value below {MAX_B:g} s/mm² (found {shown})")
        exact = [s for s in below if abs(b_value(s) - TARGET_B) < 1]
        chosen_b = TARGET_B if exact else max(b_value(s) for s in below)
        candidates = [s for s in below if abs(b_value(s) - chosen_b) < 1]
        for stack in known:
            if stack not in candidates:
                self.proposal.notes[stack.id] = f"passed over: b = {b_value(stack):g}"
        candidates = _axial(candidates, self.proposal.notes)
        reason = f"b = {chosen_b:g} s/mm²" + ("" if exact else f" (no b = {TARGET_B:g}; the highest below {MAX_B:g})")
        return self.choose("DWI", candidates, reason, f"all axial with b = {chosen_b:g}")

    def adc(self, dwi: Stack | None) -> None:
        candidates = _axial(self.kinds.get("ADC", []), self.proposal.notes)
        if dwi is not None:
            candidates = _prefer(candidates, lambda s: _same_grid(s, dwi), "not on the DWI's grid", self.proposal.notes)
        if not candidates:
            return self.missing("ADC", "no series has ImageType ADC or 'ADC' in its name")
        reason = kind(candidates[0])[1] + (
            ", on the DWI's grid" if dwi is not None and _same_grid(candidates[0], dwi) else ""
        )
        self.choose("ADC", candidates, reason, "all axial ADC maps")

    def dynamic(self) -> None:
        notes = self.proposal.notes
        stacks = _axial(self.kinds.get("dynamic", []), notes)
        if not stacks:
            for sequence in DYNAMIC_SEQUENCES:
                self.missing(sequence, "no dynamic T1 series (LAVA, VIBE, THRIVE, ...)")
            return
        untimed = [s for s in stacks if s.time_s is None]
        if untimed:
            self.proposal.problems.append(
                f"no acquisition time on {_listing(untimed)}: the dynamic phases cannot be ordered; map them by hand"
            )
            return
        stacks = sorted(stacks, key=lambda s: s.time_s)
        pre = self._pre_contrast(stacks)
        if pre is None:
            return
        post = [s for s in stacks if s.time_s > pre.time_s + SAME_TIME_S]
        for stack in stacks:
            if stack is not pre and stack not in post:
                notes[stack.id] = "passed over: acquired before or with the pre-contrast series"
        if not post:
            for sequence in ("LAP", "PVP", "DP"):
                self.missing(sequence, "no dynamic T1 acquisition after the pre-contrast one")
            return
        named = {seq: [s for s in post if PHASE_NAMES[seq].search(text(s))] for seq in ("LAP", "PVP", "DP")}
        timed = _phases_by_time(post)
        first = post[0].time_s
        for sequence in ("LAP", "PVP", "DP"):
            if named[sequence]:
                reason = f"named {sequence} ({PHASE_NAMES[sequence].search(text(named[sequence][0])).group(0)!r})"
                candidates = named[sequence]
            else:
                by_time = timed.get(sequence)
                others = {s.id for seq in named for s in named[seq]}
                if by_time is None or by_time.id in others:
                    shown = ", ".join(f"+{s.time_s - pre.time_s:.0f} s" for s in post)
                    self.missing(
                        sequence, f"{_TIMING[sequence]} (post-contrast series at {shown} after the pre-contrast)"
                    )
                    continue
                candidates = [s for s in post if abs(s.time_s - by_time.time_s) <= SAME_TIME_S]
                reason = _TIMING[sequence]
            reason += f", +{candidates[0].time_s - pre.time_s:.0f} s after the pre-contrast"
            if sequence != "LAP":
                reason += f" (+{candidates[0].time_s - first:.0f} s after the first post-contrast)"
            self.choose(sequence, candidates, reason, "acquired at the same time or named alike")
        self._check_order()

    def _pre_contrast(self, stacks: list[Stack]) -> Stack | None:
        named = [s for s in stacks if PHASE_NAMES["T1WI"].search(text(s))]
        without_agent = [s for s in stacks if not s.series.contrast_agent.strip()]
        if named:
            candidates, reason = named, "dynamic T1 named pre-contrast"
        elif without_agent and len(without_agent) < len(stacks):
            candidates, reason = without_agent[:1], "the earliest dynamic T1 without ContrastBolusAgent"
        else:
            candidates, reason = stacks[:1], "the earliest dynamic T1 acquisition (pre-contrast)"
        return self.choose("T1WI", candidates, reason, "all named pre-contrast")

    def _check_order(self) -> None:
        """The mapped dynamic phases must follow each other in time: pre, LAP, PVP, DP."""
        mapping = self.proposal.mapping
        times = [(seq, self.stack(mapping[seq]).time_s) for seq in DYNAMIC_SEQUENCES if mapping[seq]]
        for (first, t1), (second, t2) in zip(times, times[1:], strict=False):
            if t2 <= t1:
                self.proposal.problems.append(
                    f"{second} ({self.stack(mapping[second]).label}) was acquired before {first}: "
                    "the phase names contradict the acquisition times"
                )

    def stack(self, stack_id: str) -> Stack:
        return next(s for stacks in self.kinds.values() for s in stacks if s.id == stack_id)


_TIMING = {
    "LAP": f"the first post-contrast series, or the last of a multi-arterial run (under {ARTERIAL_RUN_S:g} s apart)",
    "PVP": "the first post-contrast series after the arterial run",
    "DP": f"the first series {DELAYED_AFTER_S:g}-{LATEST_DP_S:g} s after the first post-contrast one",
}


def _phases_by_time(post: list[Stack]) -> dict[str, Stack]:
    """LAP, PVP and DP among time-ordered post-contrast stacks by the timing rules (module docstring)."""
    phases: dict[str, Stack] = {}
    run = 1
    while run < len(post) and post[run].time_s - post[run - 1].time_s < ARTERIAL_RUN_S:
        run += 1
    phases["LAP"] = post[run - 1]
    if run < len(post) and post[run].time_s - post[0].time_s < DELAYED_AFTER_S:
        phases["PVP"] = post[run]
    start = run + 1 if "PVP" in phases else run
    first = post[0].time_s
    delayed = [s for s in post[start:] if DELAYED_AFTER_S <= s.time_s - first <= LATEST_DP_S]
    if delayed:
        phases["DP"] = delayed[0]
    return phases


def _fat_suppressed(stack: Stack) -> bool:
    options = set(stack.series.scan_options.upper().split("\\"))
    return bool(FAT_SUPPRESSED.search(text(stack).replace("_", " "))) or bool(options & {"FS", "SFS"})


def _same_grid(a: Stack, b: Stack) -> bool:
    return (
        a.shape == b.shape
        and a.affine is not None
        and b.affine is not None
        and bool(abs(a.affine - b.affine).max() <= 0.01)
    )


def propose(stacks: list[Stack]) -> Proposal:
    """The proposed mapping of one exam's stacks (rules in the module docstring)."""
    builder = _Builder(stacks)
    builder.t2()
    builder.adc(builder.dwi())
    builder.dynamic()
    proposal = builder.proposal
    for sequence, stack_id in proposal.mapping.items():
        stack = stack_id and builder.stack(stack_id)
        if stack and stack.problems:
            proposal.problems.append(f"{sequence}: {stack.label}: {'; '.join(stack.problems)}")
    for stack in stacks:
        if stack.id not in proposal.mapping.values() and stack.id not in proposal.notes:
            proposal.notes[stack.id] = f"not used ({kind(stack)[0]})"
    return proposal


def check_mapping(stacks: list[Stack], mapping: dict[str, str | None]) -> list[str]:
    """Problems with a confirmed mapping: each sequence on an existing, usable stack, no stack twice."""
    by_id = {s.id: s for s in stacks}
    problems = []
    unknown = set(mapping) - set(SEQUENCES)
    if unknown:
        problems.append(f"unknown sequence(s) {', '.join(sorted(unknown))}; expected {', '.join(SEQUENCES)}")
    used: dict[str, str] = {}
    for sequence in SEQUENCES:
        stack_id = mapping.get(sequence)
        if not stack_id:
            problems.append(f"{sequence}: {NOT_CHOSEN}")
        elif stack_id not in by_id:
            problems.append(f"{sequence}: no series {stack_id!r} in this exam")
        elif stack_id in used:
            problems.append(f"{sequence}: series {stack_id} is already mapped to {used[stack_id]}")
        else:
            used[stack_id] = sequence
            if by_id[stack_id].problems:
                problems.append(f"{sequence}: {by_id[stack_id].label}: {'; '.join(by_id[stack_id].problems)}")
    return problems
