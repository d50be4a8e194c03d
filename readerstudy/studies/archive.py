"""The study archive: one zip file holding one JSON document that is a whole reader study, for backup and restore.

The document is ``{"format", "format_version", "exported_at", "payload_sha256", "payload"}``; ``payload_sha256``
is the SHA-256 of the payload's canonical JSON (UTF-8, keys sorted, no spaces), so any change is detected.
The payload holds the study (owner and admins by username, the pinned model version by name), its lesions
as references (dataset, case, lesion; their public id and the SHA-256 of the stored volumes and masks), the
users (username, names, email; never a password), readers, assignments (orders as lesion public ids),
presentations, disclosures, reads (public ids, timestamps, the ``supersedes`` chain) and the predictions
shown (model version name and file hashes, probabilities, checkpoint hashes): evidence of what each reader
saw. Rows refer to one another by username, lesion public id, read public id or position in their list.

Restoring needs the cases (imported from the same dataset) and the model version (registered from the same
run, with its predictions) in the database; it writes everything or, on any problem, nothing. A change to the
fields of an archived model changes the payload: bump ``FORMAT_VERSION`` with it.
"""

import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from datetime import UTC, datetime
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from readerstudy.audit.models import AuditEvent
from readerstudy.audit.recording import record
from readerstudy.cases.models import Lesion
from readerstudy.predictions.models import ModelVersion, Prediction
from readerstudy.studies.models import Assignment, Disclosure, Presentation, Read, Reader, ReaderStudy
from readerstudy.studies.overlap import OverlapRefused, guard

FORMAT = "liverread-study-archive"
FORMAT_VERSION = 1
MEMBER = "study.json"
USER_FIELDS = ("first_name", "last_name", "email")
PREDICTION_FIELDS = (
    "probabilities",
    "malignant_probability",
    "predicted_class",
    "predicted_malignant",
    "checkpoints_sha256",
)


class ArchiveError(Exception):
    """An archive that cannot be written or restored; the message names the file and the problem."""


# --- the payload -------------------------------------------------------------------------------------------


def payload_sha256(payload: dict) -> str:
    """SHA-256 (hex) of the payload's canonical JSON: UTF-8, keys sorted, separators without spaces."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _plain_fields(model) -> list[models.Field]:
    """The model's own columns (no primary key, no relations): archived as they are."""
    return [f for f in model._meta.concrete_fields if not f.is_relation and not f.primary_key]


def _dump(obj) -> dict:
    """``obj``'s plain fields as JSON values (date-times as ISO 8601 in UTC)."""
    values = {}
    for field in _plain_fields(type(obj)):
        value = getattr(obj, field.attname)
        values[field.name] = value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value
    return values


def _load(model, row: dict) -> dict:
    """The plain fields of ``model`` from an archived ``row`` (a missing one raises KeyError)."""
    values = {}
    for field in _plain_fields(model):
        value = row[field.name]
        values[field.name] = (
            datetime.fromisoformat(value) if isinstance(field, models.DateTimeField) and value else value
        )
    return values


def _lesion_key(lesion: Lesion) -> tuple[str, str, str]:
    return lesion.case.dataset, lesion.case.source_name, lesion.source_name


def _lesion_reference(lesion: Lesion) -> dict:
    return {
        "public_id": lesion.public_id,
        "dataset": lesion.case.dataset,
        "case": lesion.case.source_name,
        "lesion": lesion.source_name,
        "volumes_sha256": {volume.sequence: volume.sha256 for volume in lesion.case.volumes.all()},
        "masks_sha256": {mask.sequence: mask.sha256 for mask in lesion.masks.all()},
    }


def study_payload(study: ReaderStudy) -> dict:
    """The whole study as plain JSON data, ordered by content (never by primary key, but for disclosures
    shown at the same instant), so that archiving a restored study gives the same payload. The rows are read
    from the latest to the earliest kind (reads, then what they refer to), so reading in an open study cannot
    make the payload refer to a row it lacks; the lesions are the study's and any other that a row names."""
    username = f"reader__user__{get_user_model().USERNAME_FIELD}"
    rows = {"assignment__study": study}
    reads = list(
        Read.objects.filter(**rows)
        .order_by("submitted_at", "public_id")
        .select_related("assignment__reader__user", "lesion", "supersedes")
    )
    disclosures = list(
        Disclosure.objects.filter(**rows)
        .order_by("shown_at", "id")
        .select_related("assignment__reader__user", "lesion")
    )
    presentations = list(
        Presentation.objects.filter(**rows)
        .select_related("assignment__reader__user", "lesion")
        .order_by(f"assignment__{username}", "shown_at", "phase", "lesion__public_id")
    )
    assignments = list(study.assignments.select_related("reader__user").order_by(username))
    named = {row.lesion_id for row in [*reads, *disclosures, *presentations]}
    named |= {pk for a in assignments for order in a.orders for pk in order}
    in_study = set(study.lesions.values_list("pk", flat=True))
    lesions = Lesion.objects.filter(pk__in=in_study | named).select_related("case")
    lesions = sorted(lesions.prefetch_related("masks", "case__volumes"), key=_lesion_key)
    lesion_ids = {lesion.pk: lesion.public_id for lesion in lesions}
    shown = {d.prediction_id for d in disclosures} | {r.prediction_shown_id for r in reads}
    predictions = Prediction.objects.filter(pk__in=shown - {None}).select_related("model_version", "lesion__case")
    predictions = sorted(predictions, key=lambda p: (p.model_version.name, _lesion_key(p.lesion)))
    versions = {v.name: v for v in [study.model_version, *(p.model_version for p in predictions)] if v}
    admins = list(study.admins.all())
    users = {u.get_username(): u for u in [study.owner, *admins, *(a.reader.user for a in assignments)] if u}
    prediction_at = {p.pk: n for n, p in enumerate(predictions)} | {None: None}
    disclosure_at = {d.pk: n for n, d in enumerate(disclosures)} | {None: None}
    return {
        "study": {
            **_dump(study),
            "owner": study.owner.get_username() if study.owner else None,
            "admins": sorted(u.get_username() for u in admins),
            "model_version": study.model_version.name if study.model_version else None,
            "lesions": [lesion.public_id for lesion in lesions if lesion.pk in in_study],
        },
        "lesions": [_lesion_reference(lesion) for lesion in lesions],
        "model_versions": [{"name": v.name, "files_sha256": v.files_sha256} for _, v in sorted(versions.items())],
        "predictions": [
            {
                "model_version": p.model_version.name,
                "lesion": p.lesion.public_id,
                **{f: getattr(p, f) for f in PREDICTION_FIELDS},
            }
            for p in predictions
        ],
        "users": [{"username": name, **{f: getattr(u, f) for f in USER_FIELDS}} for name, u in sorted(users.items())],
        "readers": [{"username": a.reader.user.get_username(), **_dump(a.reader)} for a in assignments],
        "assignments": [
            {**_by_reader(a), "orders": [[lesion_ids[pk] for pk in order] for order in a.orders]} for a in assignments
        ],
        "presentations": [{**_by_reader(p), "lesion": p.lesion.public_id} for p in presentations],
        "disclosures": [
            {**_by_reader(d), "lesion": d.lesion.public_id, "prediction": prediction_at[d.prediction_id]}
            for d in disclosures
        ],
        "reads": [
            {
                **_by_reader(r),
                "lesion": r.lesion.public_id,
                "disclosure": disclosure_at[r.disclosure_id],
                "prediction_shown": prediction_at[r.prediction_shown_id],
                "supersedes": r.supersedes.public_id if r.supersedes_id else None,
            }
            for r in reads
        ],
    }


def _by_reader(row) -> dict:
    """An assignment's (or its presentation's, disclosure's, read's) plain fields and its reader's username."""
    assignment = row if isinstance(row, Assignment) else row.assignment
    return {"reader": assignment.reader.user.get_username(), **_dump(row)}


# --- the file ----------------------------------------------------------------------------------------------


def export_study(study: ReaderStudy, path: Path) -> str:
    """Write ``study`` to the archive ``path`` (a new file, written whole or not at all); returns the payload's
    SHA-256 and records the export in the audit trail."""
    path = Path(path)
    if path.exists():
        raise ArchiveError(f"{path}: already exists; choose another file")
    if not path.parent.is_dir():
        raise ArchiveError(f"{path}: no folder {path.parent}")
    payload = study_payload(study)
    digest = payload_sha256(payload)
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": timezone.now().isoformat(),
        "payload_sha256": digest,
        "payload": payload,
    }
    handle, scratch = tempfile.mkstemp(prefix=".study-archive-", dir=path.parent)
    os.close(handle)
    try:
        with zipfile.ZipFile(scratch, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MEMBER, json.dumps(document, ensure_ascii=False, indent=1))
        os.replace(scratch, path)
    finally:
        Path(scratch).unlink(missing_ok=True)
    record(
        AuditEvent.Action.EXPORTED,
        study,
        f"study archive of {study.name!r} written to {path.name}",
        after={"file": path.name, "payload_sha256": digest, "reads": len(payload["reads"])},
    )
    return digest


def read_payload(path: Path) -> dict:
    """The verified payload of the archive ``path`` (``_verified_document``)."""
    return _verified_document(path)["payload"]


def _verified_document(path: Path) -> dict:
    """The document of the archive ``path``: a readable zip with the document, the right format and version, and
    a payload whose SHA-256 is the one recorded."""
    try:
        with zipfile.ZipFile(path) as archive:
            document = json.loads(archive.read(MEMBER).decode())
    except FileNotFoundError:
        raise ArchiveError(f"{path}: no such file") from None
    except KeyError:
        raise ArchiveError(f"{path}: not a study archive (no {MEMBER} inside)") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
        raise ArchiveError(f"{path}: corrupt or truncated archive ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ArchiveError(f"{path}: not a study archive (format is not {FORMAT!r})")
    if document.get("format_version") != FORMAT_VERSION:
        raise ArchiveError(
            f"{path}: archive format version {document.get('format_version')!r} is not supported "
            f"(this LiverRead reads version {FORMAT_VERSION})"
        )
    if payload_sha256(document.get("payload")) != document.get("payload_sha256"):
        raise ArchiveError(f"{path}: the payload's SHA-256 differs from the recorded one: the archive is corrupt")
    return document


# --- restoring ---------------------------------------------------------------------------------------------


def import_study(path: Path, override_reason: str = "") -> ReaderStudy:
    """Restore the study archived in ``path`` in one transaction, and record it in the audit trail; any problem
    raises ArchiveError (naming the file and the problem) and writes nothing. A restored study that leaves a
    blinding overlap with this database's studies (``overlap``) is refused unless ``override_reason`` is given."""
    document = _verified_document(path)
    try:
        with transaction.atomic():
            return _restore(document["payload"], Path(path).name, document["payload_sha256"], override_reason)
    except ArchiveError as exc:
        problem = str(exc)
    except IntegrityError as exc:
        problem = f"the archive breaks a rule of this database ({exc})"
    except (KeyError, TypeError, ValueError) as exc:
        problem = f"malformed archive ({type(exc).__name__}: {exc})"
    raise ArchiveError(f"{path}: {problem}; nothing was restored")


def _restore(payload: dict, file_name: str, digest: str, override_reason: str) -> ReaderStudy:
    archived = payload["study"]
    clash = ReaderStudy.objects.filter(Q(name=archived["name"]) | Q(public_id=archived["public_id"])).first()
    if clash:
        raise ArchiveError(
            f"study {archived['name']!r} ({archived['public_id']}): this database already has a study "
            f"named {clash.name!r} with public id {clash.public_id}"
        )
    lesions = _match_lesions(payload["lesions"])
    versions = _match_model_versions(payload["model_versions"])
    predictions = _match_predictions(payload["predictions"], versions, lesions)
    users = _users(payload["users"])
    readers = _readers(payload["readers"], users)
    study = _create(
        ReaderStudy,
        [
            {
                **_load(ReaderStudy, archived),
                "owner": _named(users, archived["owner"]),
                "model_version": _named(versions, archived["model_version"]),
            }
        ],
    )[0]
    through = ReaderStudy.lesions.through
    through.objects.bulk_create([through(readerstudy=study, lesion=lesions[pid]) for pid in archived["lesions"]])
    through = ReaderStudy.admins.through
    through.objects.bulk_create([through(readerstudy=study, user=users[name]) for name in archived["admins"]])
    assignments = {
        a.reader.user.get_username(): a
        for a in _create(
            Assignment,
            [
                {
                    **_load(Assignment, row),
                    "study": study,
                    "reader": readers[row["reader"]],
                    "orders": [[lesions[pid].pk for pid in order] for order in row["orders"]],
                }
                for row in payload["assignments"]
            ],
        )
    }

    def shown(row) -> dict:
        return {"assignment": assignments[row["reader"]], "lesion": lesions[row["lesion"]]}

    _create(Presentation, [{**_load(Presentation, row), **shown(row)} for row in payload["presentations"]])
    disclosures = _create(
        Disclosure,
        [
            {**_load(Disclosure, row), **shown(row), "prediction": _item(predictions, row["prediction"])}
            for row in payload["disclosures"]
        ],
    )
    reads = [
        {
            **_load(Read, row),
            **shown(row),
            "prediction_shown": _item(predictions, row["prediction_shown"]),
            "disclosure": _item(disclosures, row["disclosure"]),
            "supersedes": row["supersedes"],
        }
        for row in payload["reads"]
    ]
    _create_reads(reads)
    record(
        AuditEvent.Action.STUDY_CREATED,
        study,
        f"study {study.name!r} restored from the archive {file_name}",
        after={"file": file_name, "payload_sha256": digest, "readers": len(assignments), "reads": len(reads)},
    )
    try:
        guard(study, f"restored from the archive {file_name}", override_reason)
    except OverlapRefused as exc:
        raise ArchiveError("\n".join(exc.messages)) from None
    return study


def _named(found: dict, name: str | None):
    """The user or model version the archive names (None: none)."""
    return None if name is None else found[name]


def _item(rows: list, position: int | None):
    """The row at ``position`` of an archived list (None: none)."""
    if position is None:
        return None
    if not isinstance(position, int) or not 0 <= position < len(rows):
        raise ValueError(f"{position!r} is not a position in a list of {len(rows)}")
    return rows[position]


def _create(model, rows: list[dict]) -> list:
    """Insert ``rows`` (field values) in their order, then set the timestamps the database stamps on insert
    (``auto_now_add``) back to the archived values."""
    created = model.objects.bulk_create([model(**row) for row in rows])
    stamped = [f.name for f in _plain_fields(model) if getattr(f, "auto_now_add", False)]
    for obj, row in zip(created, rows, strict=True):
        for name in stamped:
            setattr(obj, name, row[name])
    if stamped and created:
        model.objects.bulk_update(created, stamped)
    return created


def _create_reads(rows: list[dict]) -> None:
    """Reads in generations: first reads, then the amendments of those, and so on (``supersedes`` names a
    read's public id in the archive)."""
    made: dict[str, Read] = {}
    pending = rows
    while pending:
        ready = [row for row in pending if row["supersedes"] is None or row["supersedes"] in made]
        if not ready:
            raise ArchiveError(
                f"read {pending[0]['public_id']} supersedes a read that is not in the archive (or the chain is a loop)"
            )
        made |= {
            r.public_id: r for r in _create(Read, [{**row, "supersedes": made.get(row["supersedes"])} for row in ready])
        }
        pending = [row for row in pending if row["public_id"] not in made]


def _match_lesions(references: list[dict]) -> dict[str, Lesion]:
    """{archived lesion public id: this database's lesion}, matched by (dataset, case, lesion) and verified
    by the SHA-256 of every stored volume and mask."""
    here = Lesion.objects.filter(
        case__dataset__in={r["dataset"] for r in references}, case__source_name__in={r["case"] for r in references}
    )
    found = {
        _lesion_key(lesion): lesion for lesion in here.select_related("case").prefetch_related("masks", "case__volumes")
    }
    matched = {}
    for ref in references:
        name = "/".join(key := (ref["dataset"], ref["case"], ref["lesion"]))
        if key not in found:
            raise ArchiveError(f"lesion {name} is not in this database: import its dataset first")
        stored = _lesion_reference(found[key])
        for kind in ("volumes_sha256", "masks_sha256"):
            differ = sorted(
                s for s in ref[kind].keys() | stored[kind].keys() if ref[kind].get(s) != stored[kind].get(s)
            )
            if differ:
                raise ArchiveError(
                    f"lesion {name}: the stored {kind.split('_')[0]} of {', '.join(differ)} differ from "
                    "the archived ones (SHA-256): not the same images"
                )
        matched[ref["public_id"]] = found[key]
    return matched


def _match_model_versions(archived: list[dict]) -> dict[str, ModelVersion]:
    """{name: this database's model version}, each with the archived file hashes."""
    matched = {}
    for entry in archived:
        version = ModelVersion.objects.filter(name=entry["name"]).first()
        if version is None:
            raise ArchiveError(f"model version {entry['name']!r} is not registered here: register its run first")
        mine, theirs = version.files_sha256, entry["files_sha256"]
        differ = sorted(f for f in mine.keys() | theirs.keys() if mine.get(f) != theirs.get(f))
        if differ:
            raise ArchiveError(
                f"model version {entry['name']!r} here differs from the archived one in "
                f"{', '.join(differ)} (SHA-256): not the same model"
            )
        matched[entry["name"]] = version
    return matched


def _match_predictions(archived: list[dict], versions: dict, lesions: dict) -> list[Prediction]:
    """This database's predictions, in the archive's order, each exactly the output that was shown."""
    here = {
        (p.model_version_id, p.lesion_id): p
        for p in Prediction.objects.filter(
            model_version__in=list(versions.values()), lesion__in=[lesions[entry["lesion"]] for entry in archived]
        )
    }
    matched = []
    for entry in archived:
        lesion = lesions[entry["lesion"]]
        prediction = here.get((versions[entry["model_version"]].pk, lesion.pk))
        what = f"the prediction of model version {entry['model_version']!r} for lesion {lesion}"
        if prediction is None:
            raise ArchiveError(f"{what} is not here: predict the study's lesions with that version first")
        differ = [f for f in PREDICTION_FIELDS if getattr(prediction, f) != entry[f]]
        if differ:
            raise ArchiveError(f"{what} here differs from the one shown in {', '.join(differ)}")
        matched.append(prediction)
    return matched


def _users(archived: list[dict]) -> dict:
    """{username: user}: existing users matched by username (kept as they are); the others created with no
    usable password (they set one through a password reset)."""
    model = get_user_model()
    users = {}
    for entry in archived:
        user = model.objects.filter(**{model.USERNAME_FIELD: entry["username"]}).first()
        if user is None:
            user = model(**{model.USERNAME_FIELD: entry["username"]}, **{f: entry[f] for f in USER_FIELDS})
            user.set_unusable_password()
            user.save()
        users[entry["username"]] = user
    return users


def _readers(archived: list[dict], users: dict) -> dict[str, Reader]:
    """{username: reader}: a user's existing reader profile is kept as it is; a missing one is created."""
    readers = {}
    for entry in archived:
        user = users[entry["username"]]
        reader = Reader.objects.filter(user=user).first() or Reader.objects.create(user=user, **_load(Reader, entry))
        readers[entry["username"]] = reader
    return readers
