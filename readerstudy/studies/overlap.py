"""Blinding across studies: the set-up guard. Studies share lesions, so a reader may meet a lesion in one
study after another study showed them its model output or its reference diagnosis.

- A study reveals a lesion's model output when its design is not unaided or it gives feedback; it reveals
  the reference when its feedback is the reference (practice studies).
- A reader was shown lesion L outside study S when a Disclosure of theirs for L, in another study, names a
  prediction (model output shown) or reveals the reference (practice feedback).
- A lesion counts for a reader in S when it is in their assignment's orders, or is being added to S; a
  reader being assigned gets all of S's lesions. A lesion with a read still to give is owed.
- A conflict is (reader, lesion, reason), of one of two kinds:
  prior disclosure: the reader owes a read of L in S and was shown L's model output or reference outside S;
  overlap: S (open, or being opened) and another open study T both have L for the reader, S or T reveals,
  and the reader owes a read of L in S or in T. Closed studies count only through their Disclosures.

Assigning readers, adding lesions, opening a study, turning on feedback or changing the design, and restoring
a study from an archive are refused while they leave a conflict, unless the study admin gives an override
reason; the override is recorded in the audit trail with the conflicts.
"""

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction

from readerstudy.audit.models import AuditEvent
from readerstudy.audit.recording import record
from readerstudy.cases.models import Lesion
from readerstudy.studies.models import Assignment, Design, Disclosure, Feedback, Read, Reader, ReaderStudy
from readerstudy.studies.workflow import tasks

MODEL_OUTPUT, REFERENCE = "model output", "reference"


@dataclass(frozen=True, order=True)
class Conflict:
    reader: str
    """The reader's username."""
    lesion: str
    """The lesion's public id."""
    reason: str
    """The kind of conflict and the other study's name (for the study admin, never for a reader)."""

    def __str__(self) -> str:
        return f"{self.reader} — {self.lesion} — {self.reason}"


@dataclass
class Seat:
    """A reader's lesions in one study (primary keys) and those they still owe a read of."""

    lesions: set[int]
    owed: set[int]


class OverlapRefused(ValidationError):
    """A change refused for its conflicts; the messages are a heading and one line per conflict."""

    def __init__(self, found: list[Conflict]):
        self.conflicts = found
        super().__init__(refusal_lines(found))


def refusal_lines(found: list[Conflict]) -> list[str]:
    heading = (
        f"Blinding overlap: {len(found)} conflict(s) (reader — lesion — reason). Give an override "
        "reason to proceed anyway; it is recorded in the audit trail."
    )
    return [heading, *map(str, found)]


def reveals(study: ReaderStudy) -> set[str]:
    """What ``study`` shows its readers of a lesion: MODEL_OUTPUT, REFERENCE, both or nothing."""
    shown = set()
    if study.design != Design.UNAIDED or study.feedback != Feedback.NONE:
        shown.add(MODEL_OUTPUT)
    if study.feedback == Feedback.REFERENCE:
        shown.add(REFERENCE)
    return shown


def was_shown(prediction_id: int | None, revealed: list) -> set[str]:
    """What a Disclosure showed: MODEL_OUTPUT when it names a prediction, REFERENCE when it revealed it."""
    shown = {MODEL_OUTPUT} if prediction_id is not None else set()
    return (shown | {REFERENCE}) if REFERENCE in revealed else shown


def _seats(assignments: list[Assignment]) -> dict[int, Seat]:
    """{assignment id: Seat}, with the first reads of all ``assignments`` fetched in one query."""
    done: dict[int, set[tuple[int, str]]] = {a.pk: set() for a in assignments}
    reads = Read.objects.filter(assignment__in=assignments, supersedes__isnull=True).order_by()
    for assignment_id, lesion_id, phase in reads.values_list("assignment_id", "lesion_id", "phase"):
        done[assignment_id].add((lesion_id, phase))
    return {
        a.pk: Seat(
            {pk for order in a.orders for pk in order},
            {t.lesion_id for t in tasks(a) if (t.lesion_id, t.phase) not in done[a.pk]},
        )
        for a in assignments
    }


def study_seats(
    study: ReaderStudy, readers: Iterable[Reader] | None = None, lesions: Iterable[Lesion] | None = None
) -> dict[int, Seat]:
    """{reader id: Seat} in ``study`` as it would be: its assigned readers (only ``readers`` when given, who
    get all the study's lesions unless assigned already), ``lesions`` (the study's lesions after a change)
    adding any new lesion to every seat, owed."""
    assignments = Assignment.objects.filter(study_id=study.pk).order_by()
    newcomers = set()
    if readers is not None:
        newcomers = {reader.pk for reader in readers}
        assignments = assignments.filter(reader_id__in=newcomers)
    assignments = list(assignments)
    for assignment in assignments:
        assignment.study = study  # the study as it would be
    by_assignment = _seats(assignments)
    seats = {a.reader_id: by_assignment[a.pk] for a in assignments}
    newcomers -= {a.reader_id for a in assignments}
    current = set(study.lesions.values_list("pk", flat=True)) if study.pk and (newcomers or lesions) else set()
    after = current if lesions is None else {lesion.pk for lesion in lesions}
    for seat in seats.values():
        seat.lesions |= after - current
        seat.owed |= after - current
    for reader_id in newcomers:
        seats[reader_id] = Seat(set(after), set(after))
    return seats


def shown_elsewhere(study: ReaderStudy, seats: dict[int, Seat]) -> dict[tuple[int, int], dict[str, set[str]]]:
    """{(reader id, owed lesion id): {other study's name: what it showed}} from the readers' Disclosures."""
    owed = set().union(*(seat.owed for seat in seats.values()))
    rows = (
        Disclosure.objects.filter(assignment__reader_id__in=seats, lesion_id__in=owed)
        .exclude(assignment__study_id=study.pk)
        .order_by()
        .values_list("assignment__reader_id", "lesion_id", "assignment__study__name", "prediction_id", "revealed")
    )
    shown: dict[tuple[int, int], dict[str, set[str]]] = {}
    for reader_id, lesion_id, name, prediction_id, revealed in rows:
        if lesion_id in seats[reader_id].owed and (what := was_shown(prediction_id, revealed)):
            shown.setdefault((reader_id, lesion_id), {}).setdefault(name, set()).update(what)
    return shown


def open_seats_elsewhere(study: ReaderStudy, reader_ids: Iterable[int]) -> list[tuple[ReaderStudy, int, Seat]]:
    """(other open study, reader id, Seat there) for each of the readers' assignments in other open studies."""
    assignments = list(
        Assignment.objects.filter(reader_id__in=list(reader_ids), study__is_open=True)
        .exclude(study_id=study.pk)
        .select_related("study")
        .order_by()
    )
    seats = _seats(assignments)
    return [(a.study, a.reader_id, seats[a.pk]) for a in assignments]


def _what(shown: set[str]) -> str:
    return " and ".join(sorted(shown))


def conflicts(
    study: ReaderStudy,
    *,
    readers: Iterable[Reader] | None = None,
    lesions: Iterable[Lesion] | None = None,
    opening: bool = False,
) -> list[Conflict]:
    """The conflicts of ``study`` as it would be (its design, feedback and is_open as set on the object, even
    unsaved): of ``readers`` being assigned (default: every assigned reader), with ``lesions`` as its lesions
    (default: its own), ``opening`` it. Eight queries at most (and one to evaluate a ``readers`` queryset),
    whatever the numbers of readers, lesions and studies."""
    seats = study_seats(study, readers, lesions)
    found: set[tuple[int, int, str]] = set()
    for (reader_id, lesion_id), by_study in shown_elsewhere(study, seats).items():
        for name, shown in by_study.items():
            found.add((reader_id, lesion_id, f"prior disclosure: shown its {_what(shown)} in study {name!r}"))
    if (study.is_open or opening) and seats:
        here = reveals(study)
        for other, reader_id, there in open_seats_elsewhere(study, seats):
            if not (here or reveals(other)):
                continue
            which = f"this study reveals {_what(here)}" if here else f"that one reveals {_what(reveals(other))}"
            seat = seats[reader_id]
            for lesion_id in seat.lesions & there.lesions & (seat.owed | there.owed):
                found.add((reader_id, lesion_id, f"overlap: also in open study {other.name!r}, and {which}"))
    if not found:
        return []
    users = dict(
        get_user_model()
        .objects.filter(reader__pk__in={r for r, _, _ in found})
        .values_list("reader__pk", get_user_model().USERNAME_FIELD)
    )
    public = dict(Lesion.objects.filter(pk__in={lesion for _, lesion, _ in found}).values_list("pk", "public_id"))
    return sorted(Conflict(users[r], public[lesion], reason) for r, lesion, reason in found)


def check(study: ReaderStudy, override_reason: str = "", **prospective) -> list[Conflict]:
    """The conflicts of the change (``conflicts``' keyword arguments); OverlapRefused when there are some and
    no override reason is given."""
    found = conflicts(study, **prospective)
    if found and not override_reason.strip():
        raise OverlapRefused(found)
    return found


def record_override(study: ReaderStudy, what: str, reason: str, found: list[Conflict]) -> AuditEvent | None:
    """One audit event for a change made despite ``found`` (nothing when there are none)."""
    if not found:
        return None
    return record(
        AuditEvent.Action.OVERLAP_OVERRIDDEN,
        study,
        f"blinding overlap overridden in {study.name!r} ({what}, {len(found)} conflict(s)): {reason}",
        after={"what": what, "reason": reason, "conflicts": [asdict(c) for c in found]},
    )


def guard(study: ReaderStudy, what: str, override_reason: str = "", **prospective) -> list[Conflict]:
    """``check`` then ``record_override``: the entry point for a change made in one step."""
    found = check(study, override_reason, **prospective)
    record_override(study, what, override_reason.strip(), found)
    return found


def assign_readers(
    study: ReaderStudy, readers: Iterable[Reader], group: str | None = None, override_reason: str = ""
) -> list[Assignment]:
    """Assign ``readers`` (``Assignment.assign``, in ``group`` or each reader's own) unless that leaves a
    conflict and no override reason is given (OverlapRefused); all of them or none."""
    readers = list(readers)
    with transaction.atomic():
        guard(study, f"{len(readers)} reader(s) assigned", override_reason, readers=readers)
        return [Assignment.assign(study, reader, group) for reader in readers]
