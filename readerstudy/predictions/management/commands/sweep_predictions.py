"""``python manage.py sweep_predictions``: re-send predictions and training runs left behind."""

from django.core.management.base import BaseCommand

from readerstudy.predictions.dispatch import sweep


class Command(BaseCommand):
    help = (
        "Re-send queued predictions never sent (broker outage), running ones whose worker's lease expired, and "
        "silent training runs (they resume from their last epoch). The scheduler's beat runs it periodically."
    )

    def handle(self, **options):
        counts = sweep()
        self.stdout.write(f"re-sent {counts['predictions']} prediction(s), {counts['training_runs']} training run(s)")
