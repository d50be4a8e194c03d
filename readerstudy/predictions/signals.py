"""Signals of the predictions app: others tell it what they need without it knowing them."""

from django.dispatch import Signal

lesions_needed_first = Signal()
"""Sent before predictions are sent to the workers; each receiver returns lesion primary keys in the order
readers will need them (the studies app: open studies' lesions in their readers' orders). Lesions named by no
receiver come after, in primary-key order."""
