"""How studies answer other apps' signals."""

from itertools import zip_longest

from django.dispatch import receiver

from readerstudy.predictions.signals import lesions_needed_first
from readerstudy.studies.models import Assignment


@receiver(lesions_needed_first, dispatch_uid="studies-reading-order")
def lesions_in_reading_order(sender, **kwargs) -> list[int]:
    """Open studies' lesions as their readers meet them: every reader's first lesion, then every reader's
    second, and so on (a lesion at its earliest place)."""
    open_assignments = Assignment.objects.filter(study__is_open=True).order_by("pk")
    orders = [order for orders in open_assignments.values_list("orders", flat=True) for order in orders]
    return [pk for place in zip_longest(*orders) for pk in place if pk is not None]
