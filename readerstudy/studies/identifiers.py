"""Per-study lesion ids: the id a study's readers know a lesion by, in URLs, JSON and served files.

A lesion's own public id is the same in every study, so two studies' responses could be joined on it. Readers
get instead ``study_lesion_id(study, lesion)``: a keyed hash (HMAC-SHA256 under the site's secret key, salted
for this purpose) of the study's and the lesion's public ids, 16 hex digits, the first a letter. Without the
key, ids of one lesion in two studies are unrelated; with it, the server maps an id back by hashing the study's
lesions.
Nothing is stored, so served files stay cached once for all studies.
"""

from functools import lru_cache

from django.utils.crypto import salted_hmac

from readerstudy.cases.models import Lesion, letter_first

SALT = "liverread.study-lesion-id"


@lru_cache(maxsize=65536)
def _keyed_id(study_public_id: str, lesion_public_id: str) -> str:
    digest = salted_hmac(SALT, f"{study_public_id}:{lesion_public_id}", algorithm="sha256").hexdigest()
    return letter_first(digest[:16])  # never read as a number (see new_public_id)


def study_lesion_id(study, lesion: Lesion) -> str:
    """The id of ``lesion`` in ``study`` (16 hex digits, the first a letter a-f)."""
    return lesion_id_in_study(study, lesion.public_id)


def lesion_id_in_study(study, lesion_public_id: str) -> str:
    """The id in ``study`` of the lesion whose own public id is ``lesion_public_id`` (for exports)."""
    return _keyed_id(study.public_id, lesion_public_id)


def study_lesion_ids(study) -> dict[int, str]:
    """Every lesion of ``study``: primary key → its id in the study."""
    return {pk: _keyed_id(study.public_id, public_id) for pk, public_id in study.lesions.values_list("pk", "public_id")}


def lesion_in_study(study, lesion_id: str, candidates=None) -> Lesion | None:
    """The lesion of ``study`` (or of ``candidates``, a queryset of its lesions) whose study id is
    ``lesion_id``; None when none is."""
    pool = study.lesions.all() if candidates is None else candidates
    for pk, public_id in pool.values_list("pk", "public_id"):
        if _keyed_id(study.public_id, public_id) == lesion_id:
            return Lesion.objects.get(pk=pk)
    return None


def study_etag(study, served_key: str) -> str:
    """The ETag of a served file in ``study``: a keyed hash of the study and the shared cache key, so the same
    file served in two studies carries unrelated ETags."""
    return salted_hmac(SALT, f"{study.public_id}:{served_key}", algorithm="sha256").hexdigest()[:32]
