"""Pseudonyms and opaque names: what stands in for identifying values on the way in."""

import hashlib
import hmac
import secrets

from django.conf import settings


def patient_key(original_id: str) -> str:
    """Keyed hash of a patient id: HMAC-SHA256(PSEUDONYM_KEY, id), first 32 hex digits.

    The same patient maps to the same key across imports; without the key the
    original id cannot be recovered or confirmed by guessing.
    """
    digest = hmac.new(settings.PSEUDONYM_KEY.encode(), original_id.strip().encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def stored_volume_name() -> str:
    """A storage name for a NIfTI file that says nothing about its case, sequence or label."""
    return f"volumes/{secrets.token_hex(16)}.nii.gz"
