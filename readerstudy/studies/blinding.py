"""The rules of who may see what, and when, in one place.

Before a reader's read of a lesion is locked, nothing sent to that reader may reveal the reference
diagnosis, the model's output or another reader's read. Every reader-facing view asks these functions;
nothing else decides. Reads are only ever looked up through the asking reader's own assignment.

- A reader acts in a study only while it is open and they are assigned to it.
- Images: the lesion of the reader's current task, or a lesion they have read when the study allows
  revisiting.
- Lesions: a reader knows a lesion of a study by its id there only once it is their current task or they
  have read it; any other id answers as one that does not exist (404).
- Model output and saliency: before an aided read (the current task is aided on that lesion: "assist"),
  or once no unaided read of the lesion is pending and either the study gives feedback or the reader has
  already given an aided read of it ("feedback").
- The reference diagnosis: in practice studies with reference feedback, once every read of the lesion
  is locked.
- Across studies: whatever the study the request names would show is held back while the reader still owes
  a blinded read of the lesion in another open study: model output and saliency while an unaided read is
  owed there, the reference while any read is owed there ("withheld").
- A study's results (dashboards, exports, report): its owner and the study admins granted it, and
  superusers; never a reader of it, and nobody while they read in an open study (studies share lesions);
  the admin pages holding reference labels or model output are closed to them too.
"""

from dataclasses import dataclass

from django.db.models import Q, QuerySet
from django.http import Http404

from readerstudy.cases.models import Lesion
from readerstudy.studies.identifiers import lesion_in_study
from readerstudy.studies.models import STUDY_ADMINS_GROUP, Assignment, Design, Feedback, Phase, Read, ReaderStudy
from readerstudy.studies.workflow import Progress, progress, tasks

MODEL, SALIENCY, REFERENCE = "model", "saliency", "reference"
STILL_OWED_ELSEWHERE = (
    "You still have to read this lesion in another study: what this study shows after a read is held back "
    "until that read is locked."
)


@dataclass(frozen=True)
class Reveal:
    """What of a lesion may be shown to a reader now (``allowed``), and what the study would show but another
    open study of theirs holds back (``withheld``); both subsets of {MODEL, SALIENCY, REFERENCE}."""

    allowed: frozenset[str]
    withheld: frozenset[str]


def open_assignment(user, study_id: str) -> Assignment:
    """The user's assignment in the open study ``study_id``; Http404 otherwise (whether the study exists, is
    closed or is someone else's is not told apart)."""
    assignment = None
    if user.is_authenticated:
        assignment = (
            Assignment.objects.filter(study__public_id=study_id, study__is_open=True, reader__user=user)
            .select_related("study", "reader__user")
            .order_by()
            .first()
        )
    if assignment is None:
        raise Http404("No open study of yours has this id.")
    return assignment


def study_lesion(assignment: Assignment, lesion_id: str, now: Progress | None = None) -> Lesion:
    """The lesion whose id in the assignment's study is ``lesion_id``, when the reader knows it (their current
    task's lesion or one they have read); Http404 otherwise, as for an id that names nothing."""
    now = now or progress(assignment)
    known = {lesion for lesion, _ in now.read} | ({now.next_task.lesion_id} if now.next_task else set())
    lesion = lesion_in_study(assignment.study, lesion_id, assignment.study.lesions.filter(pk__in=known))
    if lesion is None:
        raise Http404("This study has no lesion with this id.")
    return lesion


def may_view_lesion(assignment: Assignment, lesion_id: int, now: Progress | None = None) -> bool:
    """Images of ``lesion_id``: the current task's lesion, or a read lesion where revisiting is allowed.
    ``now``: the reader's progress, when the caller has it already."""
    now = now or progress(assignment)
    if now.next_task is not None and now.next_task.lesion_id == lesion_id:
        return True
    return assignment.study.allow_revisit and now.has_read(lesion_id)


def reveal(assignment: Assignment, lesion_id: int, now: Progress | None = None) -> Reveal:
    """What of ``lesion_id`` this study shows the reader now, less what their other open studies hold back."""
    here = revealable_here(assignment, lesion_id, now)
    hidden = hidden_by_reads_owed(owed_elsewhere(assignment, lesion_id)) if here else frozenset()
    return Reveal(here - hidden, here & hidden)


def revealable_here(assignment: Assignment, lesion_id: int, now: Progress | None = None) -> frozenset[str]:
    """What of ``lesion_id`` the assignment's own study would show the reader now."""
    study = assignment.study
    now = now or progress(assignment)
    pending = now.pending_phases(lesion_id)
    allowed: set[str] = set()
    if is_assist(now, lesion_id):
        allowed |= {MODEL, SALIENCY}
    if now.has_read(lesion_id) and Phase.UNAIDED not in pending:
        read_aided = study.design != Design.UNAIDED and Phase.AIDED not in pending
        if study.feedback != Feedback.NONE or read_aided:
            allowed |= {MODEL, SALIENCY}
        if study.feedback == Feedback.REFERENCE and study.practice and not pending:
            allowed.add(REFERENCE)
    if study.model_version_id is None:
        allowed -= {MODEL, SALIENCY}
    return frozenset(allowed)


def owed_elsewhere(assignment: Assignment, lesion_id: int) -> set[str]:
    """The phases of ``lesion_id`` the assignment's reader still owes in their other open studies."""
    others = Assignment.objects.filter(reader_id=assignment.reader_id, study__is_open=True).exclude(pk=assignment.pk)
    holding = [a for a in others.select_related("study") if any(lesion_id in order for order in a.orders)]
    if not holding:
        return set()
    reads = Read.objects.filter(assignment__in=holding, lesion_id=lesion_id, supersedes__isnull=True)
    done = set(reads.values_list("assignment_id", "phase"))
    return {t.phase for a in holding for t in tasks(a) if t.lesion_id == lesion_id and (a.pk, t.phase) not in done}


def hidden_by_reads_owed(owed: set[str]) -> frozenset[str]:
    """What reads still owed elsewhere keep hidden: model output and saliency while an unaided read is owed
    (an aided read shows them anyway), the reference while any read is."""
    hidden = {MODEL, SALIENCY} if Phase.UNAIDED in owed else set()
    return frozenset(hidden | ({REFERENCE} if owed else set()))


def is_assist(now: Progress, lesion_id: int) -> bool:
    """True when the reader's current task is an aided read of ``lesion_id`` (AI output shown first)."""
    task = now.next_task
    return task is not None and task.lesion_id == lesion_id and task.phase == Phase.AIDED


def reads_in_an_open_study(user) -> bool:
    """True while ``user`` is assigned as a reader to an open study. Studies share lesions, so such a user
    sees no study's results and, in the admin, no reference label or model output at all until then."""
    return user.is_authenticated and Assignment.objects.filter(reader__user=user, study__is_open=True).exists()


def administered_studies(user) -> QuerySet[ReaderStudy]:
    """The studies whose results ``user`` may see: none while they read in an open study; else every study
    for a superuser; for a member of the study admins group, those they own or were granted and do not read
    in; none otherwise."""
    if not user.is_authenticated or reads_in_an_open_study(user):
        return ReaderStudy.objects.none()
    if user.is_superuser:
        return ReaderStudy.objects.all()
    if not user.groups.filter(name=STUDY_ADMINS_GROUP).exists():
        return ReaderStudy.objects.none()
    mine = ReaderStudy.objects.filter(Q(owner=user) | Q(admins=user)).exclude(assignments__reader__user=user)
    return mine.distinct()


def may_administer(user, study: ReaderStudy) -> bool:
    """True when ``study`` is one of ``administered_studies(user)``."""
    return administered_studies(user).filter(pk=study.pk).exists()
