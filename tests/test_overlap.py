"""Blinding across studies: the set-up guard (``readerstudy.studies.overlap``) finds readers who would meet a
lesion already revealed to them, or shared with another open study that reveals it, and the admin pages and
``import_study`` refuse such a set-up unless an override reason is given, which the audit trail records."""

import pytest
from django.core.management import CommandError, call_command
from test_archive import delete_study
from test_reading import as_user, make_reader, new_study, next_task, read
from test_training import one_thread  # noqa: F401 (autouse: tiny networks run faster on one thread)

from readerstudy.audit.models import AuditEvent
from readerstudy.studies.models import Assignment, Disclosure, Read, ReaderStudy
from readerstudy.studies.overlap import Conflict, OverlapRefused, assign_readers, conflicts

pytestmark = pytest.mark.django_db
OVERRIDDEN = AuditEvent.Action.OVERLAP_OVERRIDDEN
REVEALING = {
    "feedback": {"feedback": "model"},
    "sequential": {"design": "sequential"},
    "practice": {"practice": True, "feedback": "reference"},
}


def read_all(client, study, reader) -> None:
    """``reader`` gives every read ``study`` asks of them."""
    as_user(client, reader)
    while (task := next_task(client, study)["task"]) is not None:
        assert read(client, study, task).status_code == 201


def overlaps(reader, lesions, other: str, reveals: str) -> list[Conflict]:
    """The overlap conflicts of ``reader`` on ``lesions`` with the open study named ``other``."""
    return sorted(
        Conflict(reader.user.username, lesion.public_id, f"overlap: also in open study {other!r}, and {reveals}")
        for lesion in lesions
    )


# --- the rules ---------------------------------------------------------------------------------------------


def test_practice_feedback_is_a_prior_disclosure_until_the_lesion_is_read(client, predicted):
    r1, r2 = make_reader("r1"), make_reader("r2")
    practice = new_study(predicted, [r1], name="Practice", practice=True, feedback="reference")
    as_user(client, r1)
    task = next_task(client, practice)["task"]
    assert read(client, practice, task).status_code == 201
    assert client.get(f"/api/studies/{practice.public_id}/lesions/{task['lesion']}/feedback/").status_code == 200
    shown = {d.lesion for d in Disclosure.objects.filter(prediction__isnull=False) if "reference" in d.revealed}
    assert len(shown) == 1
    practice.is_open = False  # closed: it counts through its disclosures only
    practice.save()
    trial = new_study(predicted, [r1, r2], name="Trial")
    reason = "prior disclosure: shown its model output and reference in study 'Practice'"
    assert conflicts(trial) == [Conflict("r1", shown.pop().public_id, reason)]
    read_all(client, trial, r1)
    assert conflicts(trial) == []


def test_a_disclosure_counts_only_when_it_showed_model_output_or_the_reference(eight_lesions):
    r1 = make_reader("r1")
    earlier = new_study(eight_lesions, [r1], name="Earlier", design="sequential", is_open=False)
    first, second = eight_lesions[:2]
    shown = {"assignment": earlier.assignments.get(), "purpose": "assist", "revealed": ["model", "saliency"]}
    Disclosure.objects.create(lesion=first, **shown)  # no prediction: the output was not ready, nothing shown
    Disclosure.objects.create(lesion=second, **shown | {"purpose": "feedback", "revealed": ["reference"]})
    trial = new_study(eight_lesions, [r1], name="Trial")
    reason = "prior disclosure: shown its reference in study 'Earlier'"
    assert conflicts(trial) == [Conflict("r1", second.public_id, reason)]


@pytest.mark.parametrize("kind", REVEALING)
def test_an_open_revealing_study_overlaps_an_open_unaided_study_both_ways(eight_lesions, kind):
    r1, r2 = make_reader("r1"), make_reader("r2")
    revealing = new_study(eight_lesions, [r1], name="Revealing", **REVEALING[kind])
    trial = new_study(eight_lesions[:5], [r1, r2], name="Trial")
    what = "model output and reference" if kind == "practice" else "model output"
    assert conflicts(trial) == overlaps(r1, eight_lesions[:5], "Revealing", f"that one reveals {what}")
    assert conflicts(revealing) == overlaps(r1, eight_lesions[:5], "Trial", f"this study reveals {what}")


def test_two_unaided_studies_without_feedback_do_not_overlap(eight_lesions):
    r1 = make_reader("r1")
    new_study(eight_lesions, [r1], name="First")
    second = new_study(eight_lesions, [r1], name="Second")
    assert conflicts(second) == [] and conflicts(second, opening=True) == []


def test_closed_studies_do_not_overlap_until_one_is_opened(eight_lesions):
    r1 = make_reader("r1")
    revealing = new_study(eight_lesions, [r1], name="Revealing", feedback="model", is_open=False)
    trial = new_study(eight_lesions, [r1], name="Trial")
    assert conflicts(trial) == [] and conflicts(revealing) == []
    opened = overlaps(r1, eight_lesions, "Trial", "this study reveals model output")
    assert conflicts(revealing, opening=True) == opened
    trial.is_open = False  # both closed: opening one overlaps nothing
    trial.save()
    assert conflicts(revealing, opening=True) == []


def test_an_overlap_ends_once_every_read_of_its_lesions_is_given_in_both(client, eight_lesions):
    r1 = make_reader("r1")
    revealing = new_study(eight_lesions[:3], [r1], name="Revealing", feedback="model")
    trial = new_study(eight_lesions[:3], [r1], name="Trial")
    read_all(client, trial, r1)
    assert len(conflicts(trial)) == 3  # still owed in the revealing study
    read_all(client, revealing, r1)
    assert conflicts(trial) == [] and conflicts(revealing) == []


def test_readers_being_assigned_and_lesions_being_added_are_checked_before_anything_is_saved(eight_lesions):
    r1, r2 = make_reader("r1"), make_reader("r2")
    new_study(eight_lesions, [r1, r2], name="Revealing", feedback="model")
    trial = new_study(eight_lesions[:4], name="Trial")
    reason = "that one reveals model output"
    assert conflicts(trial) == []
    assert conflicts(trial, readers=[r2]) == overlaps(r2, eight_lesions[:4], "Revealing", reason)
    Assignment.assign(trial, r1)
    assert conflicts(trial, lesions=eight_lesions[:5]) == overlaps(r1, eight_lesions[:5], "Revealing", reason)
    assert trial.lesions.count() == 4 and trial.assignments.count() == 1


def test_the_check_takes_a_few_queries_whatever_the_numbers_of_readers_and_lesions(
    eight_lesions, django_assert_max_num_queries
):
    readers = [make_reader(f"r{n}") for n in range(5)]
    for n, fields in enumerate(REVEALING.values()):
        study = new_study(eight_lesions, readers, name=f"Revealing {n}", **fields)
        Disclosure.objects.create(
            assignment=study.assignments.first(), lesion=eight_lesions[n], purpose="feedback", revealed=["reference"]
        )
    trial = new_study(eight_lesions, readers[:3], name="Trial")
    with django_assert_max_num_queries(8):
        found = conflicts(trial, readers=readers, lesions=eight_lesions)
    assert {c.reader for c in found} == {f"r{n}" for n in range(5)} and len(found) > 3 * 5 * 8


def test_assign_readers_refuses_all_or_assigns_all_with_one_audited_override(eight_lesions):
    r1, r2 = make_reader("r1"), make_reader("r2")
    new_study(eight_lesions, [r1], name="Revealing", design="sequential")
    trial = new_study(eight_lesions, name="Trial")
    with pytest.raises(OverlapRefused) as refused:
        assign_readers(trial, [r2, r1])
    assert len(refused.value.conflicts) == 8 and trial.assignments.count() == 0
    with pytest.raises(OverlapRefused):
        assign_readers(trial, [r2, r1], override_reason="  ")  # a blank reason is none
    assert not AuditEvent.objects.filter(action=OVERRIDDEN).exists()
    assigned = assign_readers(trial, [r2, r1], override_reason="r1 is the only reader for this cohort")
    assert [a.reader for a in assigned] == [r2, r1] and trial.assignments.count() == 2
    (event,) = AuditEvent.objects.filter(action=OVERRIDDEN)
    assert event.object_id == trial.public_id and event.after["reason"] == "r1 is the only reader for this cohort"
    assert {c["reader"] for c in event.after["conflicts"]} == {"r1"} and len(event.after["conflicts"]) == 8
    assert assign_readers(trial, [r2]) == [trial.assignments.get(reader=r2)]  # already assigned: no conflict


# --- the admin ---------------------------------------------------------------------------------------------


def change_url(study) -> str:
    return f"/admin/studies/readerstudy/{study.pk}/change/"


def post_change(client, study, **changes):
    """POST the study's change form as the page fills it, with ``changes`` (False unticks a box)."""
    page = client.get(change_url(study))
    data = {}
    forms = [page.context["adminform"].form]
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        data |= {formset.management_form.add_prefix(k): v for k, v in formset.management_form.initial.items()}
        forms += formset.forms
    for form in forms:
        for name in form.fields:
            value = form[name].value()
            if value is not None and value is not False:
                data[form.add_prefix(name)] = "on" if value is True else value
    for name, value in changes.items():
        data.pop(name, None) if value is False else data.update({name: "on" if value is True else value})
    return client.post(change_url(study), data)


def study_events():
    return list(AuditEvent.objects.filter(action__in=[OVERRIDDEN, AuditEvent.Action.STUDY_CHANGED]))


def test_opening_a_study_is_refused_in_the_admin_listing_the_overlaps_unless_a_reason_is_given(
    client, eight_lesions, study_admin
):
    r1, r2 = make_reader("r1"), make_reader("r2")
    new_study(eight_lesions, [r1], name="Revealing", feedback="model")
    trial = new_study(eight_lesions[:3], [r1, r2], name="Trial", owner=study_admin, is_open=False)
    before = study_events()
    assert '<div class="readonly">none</div>' in client.get(change_url(trial)).content.decode()  # closed
    response = post_change(client, trial, is_open=True)
    page = response.content.decode()
    assert response.status_code == 200 and "Blinding overlap: 3 conflict(s)" in page
    for lesion in eight_lesions[:3]:
        assert f"r1 — {lesion.public_id} — overlap: also in open study &#x27;Revealing&#x27;" in page
    assert "r2 —" not in page and eight_lesions[3].public_id not in page
    trial.refresh_from_db()
    assert not trial.is_open and study_events() == before

    response = post_change(client, trial, is_open=True, override_reason="pilot: r1 reads both by design")
    assert response.status_code == 302
    trial.refresh_from_db()
    assert trial.is_open
    (event,) = AuditEvent.objects.filter(action=OVERRIDDEN)
    assert event.actor == study_admin and event.object_id == trial.public_id and "opened" in event.summary
    assert event.after["reason"] == "pilot: r1 reads both by design" and len(event.after["conflicts"]) == 3
    page = client.get(change_url(trial)).content.decode()
    assert f"r1 — {eight_lesions[0].public_id} — overlap" in page  # the current overlaps, read-only


def test_turning_on_feedback_is_refused_in_the_admin_unless_a_reason_is_given(client, predicted, study_admin):
    r1 = make_reader("r1")
    new_study(predicted, [r1], name="Other unaided")
    trial = new_study(predicted, [r1], name="Trial", owner=study_admin)
    assert post_change(client, trial, instructions="Read carefully.").status_code == 302  # not guarded
    response = post_change(client, trial, feedback="model")
    assert response.status_code == 200
    reason = "overlap: also in open study &#x27;Other unaided&#x27;, and this study reveals model output"
    assert f"r1 — {predicted[0].public_id} — {reason}" in response.content.decode()
    trial.refresh_from_db()
    assert trial.feedback == "none" and not AuditEvent.objects.filter(action=OVERRIDDEN).exists()
    assert post_change(client, trial, feedback="model", override_reason="approved").status_code == 302
    trial.refresh_from_db()
    assert trial.feedback == "model" and AuditEvent.objects.filter(action=OVERRIDDEN).count() == 1


def test_adding_lesions_to_a_study_nobody_is_assigned_to_yet_is_not_refused(client, eight_lesions, study_admin):
    r1 = make_reader("r1")
    new_study(eight_lesions, [r1], name="Revealing", feedback="model")
    trial = new_study(eight_lesions[:2], name="Trial", owner=study_admin)
    assert post_change(client, trial, lesions=[lesion.pk for lesion in eight_lesions]).status_code == 302
    assert trial.lesions.count() == 8 and not AuditEvent.objects.filter(action=OVERRIDDEN).exists()


def assign(client, study, readers, **extra):
    form = {
        "action": "assign_to_study",
        "_selected_action": [r.pk for r in readers],
        "apply": "1",
        "study": study.pk,
        **extra,
    }
    return client.post("/admin/studies/reader/", form, follow=True)


def test_assigning_readers_in_the_admin_is_refused_listing_the_overlaps_unless_a_reason_is_given(
    client, eight_lesions, study_admin
):
    r1, r2 = make_reader("r1"), make_reader("r2")
    new_study(eight_lesions[2:], [r1], name="Practice", practice=True, feedback="reference")
    trial = new_study(eight_lesions[:4], name="Trial", owner=study_admin)
    page = assign(client, trial, [r1, r2]).content.decode()
    assert "Blinding overlap: 2 conflict(s)" in page and "reader(s) assigned" not in page
    reason = "overlap: also in open study &#x27;Practice&#x27;, and that one reveals model output and reference"
    for lesion in eight_lesions[2:4]:
        assert f"r1 — {lesion.public_id} — {reason}" in page
    assigned = AuditEvent.objects.filter(action__in=[OVERRIDDEN, AuditEvent.Action.READER_ASSIGNED])
    assert trial.assignments.count() == 0 and not assigned.filter(object_id=trial.public_id).exists()
    assert "2 reader(s) assigned" in assign(client, trial, [r1, r2], override_reason="agreed").content.decode()
    assert trial.assignments.count() == 2
    (event,) = AuditEvent.objects.filter(action=OVERRIDDEN)
    assert event.actor == study_admin and event.after["reason"] == "agreed" and len(event.after["conflicts"]) == 2
    r3 = make_reader("r3")
    assert "1 reader(s) assigned" in assign(client, trial, [r3]).content.decode()  # no overlap: no reason asked


# --- import_study ------------------------------------------------------------------------------------------


def test_import_study_refuses_an_overlap_naming_it_and_restores_with_a_reason(client, eight_lesions, tmp_path):
    r1 = make_reader("r1")
    archived = new_study(eight_lesions[:3], [r1], name="Archived")
    as_user(client, r1)
    assert read(client, archived, next_task(client, archived)["task"]).status_code == 201
    read_there = Read.objects.get().lesion
    call_command("export_study", archived.public_id, output=tmp_path / "a.zip")
    delete_study(archived)
    practice = new_study(eight_lesions, [r1], name="Practice", practice=True, feedback="reference", is_open=False)
    shown = next(lesion for lesion in eight_lesions[:3] if lesion != read_there)
    for lesion in (shown, read_there):  # a lesion read in the archived study is owed no more
        Disclosure.objects.create(
            assignment=practice.assignments.get(), lesion=lesion, purpose="feedback", revealed=["reference"]
        )
    new_study(eight_lesions, [r1], name="Revealing", feedback="model")
    events = AuditEvent.objects.count()
    with pytest.raises(CommandError) as refused:
        call_command("import_study", tmp_path / "a.zip")
    message = str(refused.value)
    for lesion in eight_lesions[:3]:
        assert f"r1 — {lesion.public_id} — overlap: also in open study 'Revealing'" in message
    prior = "prior disclosure: shown its reference in study 'Practice'"
    assert f"r1 — {shown.public_id} — {prior}" in message and f"{read_there.public_id} — {prior}" not in message
    assert "Blinding overlap: 4 conflict(s)" in message and message.endswith("nothing was restored")
    assert not ReaderStudy.objects.filter(name="Archived").exists() and AuditEvent.objects.count() == events

    call_command("import_study", tmp_path / "a.zip", override_reason="restoring the trial as it was")
    restored = ReaderStudy.objects.get(name="Archived")
    (event,) = AuditEvent.objects.filter(action=OVERRIDDEN)
    assert event.object_id == restored.public_id and event.after["reason"] == "restoring the trial as it was"
    assert "restored from the archive a.zip" in event.summary and event.actor is None
