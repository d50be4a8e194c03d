"""What the audit trail listens to: imports (and the cases they refused), studies (their fields, lesions
and granted admins), assignments and reads (model activations and exports call ``record`` where they happen)."""

from django.contrib.auth import get_user_model
from django.db.models.signals import m2m_changed, post_save, pre_save
from django.dispatch import receiver
from django.forms.models import model_to_dict

from readerstudy.audit.models import AuditEvent
from readerstudy.audit.recording import record, record_about
from readerstudy.cases.signals import case_imported, cases_rejected
from readerstudy.studies.models import Assignment, Read, ReaderStudy

STUDY_FIELDS = (
    "name",
    "instructions",
    "owner",
    "model_version",
    "design",
    "washout_days",
    "feedback",
    "practice",
    "allow_revisit",
    "allow_amend",
    "field_of_view_mm",
    "is_open",
)
Action = AuditEvent.Action


@receiver(case_imported)
def case_was_imported(sender, case, **kwargs):
    summary = f"case {case.dataset}/{case.source_name} imported ({case.lesions.count()} lesion(s))"
    record(Action.CASE_IMPORTED, case, summary, after={"dataset": case.dataset, "source": case.source_name})


@receiver(cases_rejected)
def cases_were_rejected(sender, dataset, rejected, **kwargs):
    """One event per refused case, with its problems (the first 20)."""
    for name, problems in rejected.items():
        record_about(
            Action.CASE_REJECTED,
            "Case",
            f"{dataset}/{name}",
            f"case {dataset}/{name} rejected: {problems[0] if problems else 'no reason given'}",
            after={"dataset": dataset, "source": name, "problems": problems[:20]},
        )


@receiver(pre_save, sender=ReaderStudy)
def remember_study(sender, instance, **kwargs):
    old = ReaderStudy.objects.filter(pk=instance.pk).first() if instance.pk else None
    instance._audit_before = model_to_dict(old, fields=STUDY_FIELDS) if old else None


@receiver(post_save, sender=ReaderStudy)
def study_saved(sender, instance, created, **kwargs):
    now = model_to_dict(instance, fields=STUDY_FIELDS)
    before = getattr(instance, "_audit_before", None)
    if created or before is None:
        record(Action.STUDY_CREATED, instance, f"study {instance.name!r} created", after=now)
        return
    changed = [field for field in STUDY_FIELDS if before.get(field) != now.get(field)]
    if changed:
        record(
            Action.STUDY_CHANGED,
            instance,
            f"study {instance.name!r} changed: {', '.join(changed)}",
            before={f: before.get(f) for f in changed},
            after={f: now.get(f) for f in changed},
        )


def _members(field: str, study: ReaderStudy) -> set[str]:
    """A study's lesions (public ids) or granted admins (usernames)."""
    if field == "lesions":
        return set(study.lesions.values_list("public_id", flat=True))
    return set(study.admins.values_list(get_user_model().USERNAME_FIELD, flat=True))


def _record_members(study: ReaderStudy, field: str, before: set[str], after: set[str]) -> None:
    added, removed = sorted(after - before), sorted(before - after)
    if added or removed:
        record(
            Action.STUDY_CHANGED,
            study,
            f"study {study.name!r} changed: {field} +{len(added)} -{len(removed)}",
            before={field: sorted(before)},
            after={field: sorted(after)},
        )


@receiver(m2m_changed, sender=ReaderStudy.lesions.through)
@receiver(m2m_changed, sender=ReaderStudy.admins.through)
def study_members_changed(sender, instance, action, reverse, pk_set, **kwargs):
    """Lesions or admins added to, removed from or cleared off a study, from either side of the relation
    (``reverse``: ``instance`` is the lesion or user and ``pk_set`` the studies); before and after are each
    affected study's whole set."""
    field = "lesions" if sender is ReaderStudy.lesions.through else "admins"
    if action.startswith("pre_"):
        if not reverse:
            studies = [instance]
        elif pk_set is None:  # clear
            studies = ReaderStudy.objects.filter(**{field: instance})
        else:
            studies = ReaderStudy.objects.filter(pk__in=pk_set)
        instance._audit_members_before = {study: _members(field, study) for study in studies}
    else:
        for study, before in instance._audit_members_before.items():
            _record_members(study, field, before, _members(field, study))


@receiver(post_save, sender=Assignment)
def reader_assigned(sender, instance, created, **kwargs):
    if created:
        record(
            Action.READER_ASSIGNED,
            instance.study,
            f"{instance.reader.user.get_username()} assigned to {instance.study.name!r} as {instance.group}",
            after={"reader": instance.reader.user.get_username(), "group": instance.group},
        )


@receiver(post_save, sender=Read)
def read_submitted(sender, instance, created, **kwargs):
    if created:
        reader = instance.assignment.reader.user.get_username()
        record(
            Action.READ_SUBMITTED,
            instance,
            f"{reader} read lesion {instance.lesion.public_id} ({instance.phase})"
            + (" amending an earlier read" if instance.supersedes_id else ""),
            after={
                "study": instance.assignment.study.public_id,
                "reader": reader,
                "lesion": instance.lesion.public_id,
                "phase": instance.phase,
                "diagnosis": instance.diagnosis,
                "confidence": instance.confidence,
                "malignancy": instance.malignancy,
                "amends": instance.supersedes.public_id if instance.supersedes_id else None,
            },
        )
