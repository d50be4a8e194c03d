"""Signals of the cases app: others react to imports without the importer knowing them."""

from django.dispatch import Signal

case_imported = Signal()
"""Sent with ``case`` after a case's rows are committed."""

cases_rejected = Signal()
"""Sent with ``dataset`` and ``rejected`` ({case name: [problems]}) after an import refused cases."""
