"""The rules of who may see what, and when, in one place.

Before a reader's read of a lesion is locked, nothing sent to that reader may reveal the reference
diagnosis, the model's output or another reader's read. Every reader-facing view asks these functions;
nothing else decides. Reads are only ever looked up through the asking reader's own assignment.

- A reader acts in a study only while it is open and they are assigned to it.
- Images: the lesion of the reader's current task, or a lesion they have read when the study allows
  revisiting.
- Model output and saliency: before an aided read (the current task is aided on that lesion: "assist"),
  or once no unaided read of the lesion is pending and either the study gives feedback or the reader has
  already given an aided read of it ("feedback").
- The reference diagnosis: in practice studies with reference feedback, once every read of the lesion
  is locked.
- A study's results (dashboards, exports, report): its owner and the study admins granted it, and
  superusers; never a reader of it.
"""

from readerstudy.studies.models import STUDY_ADMINS_GROUP, Assignment, Design, Feedback, Phase, ReaderStudy
from readerstudy.studies.workflow import first_reads, pending_phases, progress

MODEL, SALIENCY, REFERENCE = "model", "saliency", "reference"


def assignment_for(user, study: ReaderStudy) -> Assignment | None:
    """The user's assignment in ``study`` if they may read in it now (open study), else None."""
    if not study.is_open or not user.is_authenticated:
        return None
    return Assignment.objects.filter(study=study, reader__user=user).select_related("study", "reader").first()


def may_view_lesion(assignment: Assignment, lesion_id: int) -> bool:
    """Images of ``lesion_id``: the current task's lesion, or a read lesion where revisiting is allowed."""
    task = progress(assignment).next_task
    if task is not None and task.lesion_id == lesion_id:
        return True
    return assignment.study.allow_revisit and first_reads(assignment).filter(lesion_id=lesion_id).exists()


def revealable(assignment: Assignment, lesion_id: int) -> frozenset[str]:
    """What of ``lesion_id`` may be shown to this reader now: a subset of {MODEL, SALIENCY, REFERENCE}."""
    study = assignment.study
    task = progress(assignment).next_task
    pending = pending_phases(assignment, lesion_id)
    allowed: set[str] = set()
    if _assists(task, lesion_id):
        allowed |= {MODEL, SALIENCY}
    has_read = first_reads(assignment).filter(lesion_id=lesion_id).exists()
    if has_read and Phase.UNAIDED not in pending:
        read_aided = study.design != Design.UNAIDED and Phase.AIDED not in pending
        if study.feedback != Feedback.NONE or read_aided:
            allowed |= {MODEL, SALIENCY}
        if study.feedback == Feedback.REFERENCE and study.practice and not pending:
            allowed.add(REFERENCE)
    if study.model_version_id is None:
        allowed -= {MODEL, SALIENCY}
    return frozenset(allowed)


def is_assist(assignment: Assignment, lesion_id: int) -> bool:
    """True when the reader's current task is an aided read of ``lesion_id`` (AI output shown first)."""
    return _assists(progress(assignment).next_task, lesion_id)


def _assists(task, lesion_id: int) -> bool:
    return task is not None and task.lesion_id == lesion_id and task.phase == Phase.AIDED


def may_administer(user, study: ReaderStudy) -> bool:
    """True for a superuser, and for the study's owner or a granted study admin who is in the study admins
    group and not one of its readers."""
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    if study.assignments.filter(reader__user=user).exists():
        return False
    is_admin = user.groups.filter(name=STUDY_ADMINS_GROUP).exists()
    return is_admin and (study.owner_id == user.pk or study.admins.filter(pk=user.pk).exists())
