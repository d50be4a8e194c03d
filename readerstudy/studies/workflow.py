"""What a reader reads next: the tasks of an assignment in the reader's fixed order, washout, progress.

A task is one read to give: (session, lesion, phase). Unaided studies have one unaided task per lesion;
sequential AI-assisted studies an unaided then an aided task per lesion; crossover studies one session per
order, the ``aided_session`` read aided and the other unaided. The next task is the first one without a
read, so a reader resumes exactly where they left, whatever happened to the page.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Max
from django.utils import timezone

from readerstudy.studies.models import Assignment, Design, Phase, Read


@dataclass(frozen=True)
class Task:
    session: int
    lesion_id: int
    phase: str


@dataclass(frozen=True)
class Progress:
    """Lesions finished (every phase read) of the lesions in the current session, the next task, and the
    reads owed and given as (lesion id, phase) pairs, so that questions about one lesion need no query."""

    session: int
    sessions: int
    done: int
    total: int
    next_task: Task | None
    opens_at: datetime | None
    """When the next session opens, while a washout holds it back."""
    owed: frozenset[tuple[int, str]]
    read: frozenset[tuple[int, str]]

    @property
    def finished(self) -> bool:
        return self.next_task is None and self.opens_at is None

    def has_read(self, lesion_id: int) -> bool:
        return any(lesion == lesion_id for lesion, _ in self.read)

    def pending_phases(self, lesion_id: int) -> set[str]:
        """Phases of ``lesion_id`` the reader has still to read (in any session)."""
        return {phase for lesion, phase in self.owed - self.read if lesion == lesion_id}


def tasks(assignment: Assignment) -> list[Task]:
    """Every read the reader owes, in order."""
    design = assignment.study.design
    if design == Design.SEQUENTIAL:
        return [Task(1, pk, phase) for pk in assignment.orders[0] for phase in (Phase.UNAIDED, Phase.AIDED)]
    if design == Design.CROSSOVER:
        return [
            Task(session, pk, Phase.AIDED if session == assignment.aided_session else Phase.UNAIDED)
            for session, order in enumerate(assignment.orders, start=1)
            for pk in order
        ]
    return [Task(1, pk, Phase.UNAIDED) for pk in assignment.orders[0]]


def first_reads(assignment: Assignment):
    """The reader's first (not amending) reads in this study."""
    return Read.objects.filter(assignment=assignment, supersedes__isnull=True)


def progress(assignment: Assignment, now: datetime | None = None) -> Progress:
    """Where the reader stands. A crossover's second session opens ``washout_days`` after the last read
    of the first session."""
    done = frozenset(first_reads(assignment).order_by().values_list("lesion_id", "phase"))
    owed = tasks(assignment)
    pending = [t for t in owed if (t.lesion_id, t.phase) not in done]
    sessions = len(assignment.orders)
    next_task, opens_at = (pending[0] if pending else None), None
    session = next_task.session if next_task else sessions
    if next_task and session > 1:
        last = first_reads(assignment).filter(session=session - 1).aggregate(at=Max("submitted_at"))["at"]
        opens = last + timedelta(days=assignment.study.washout_days)
        if (now or timezone.now()) < opens:
            next_task, opens_at, session = None, opens, session - 1
    total = len(assignment.orders[session - 1])
    unfinished = {t.lesion_id for t in pending if t.session == session}
    owed_pairs = frozenset((t.lesion_id, t.phase) for t in owed)
    return Progress(session, sessions, total - len(unfinished), total, next_task, opens_at, owed_pairs, done)
